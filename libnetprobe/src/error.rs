//! The one error type of the library: a kind per way things fail, each with the exit code a
//! tool uses for it. Callers match on the kind, never on the text.
use thiserror::Error;

/// Everything that can go wrong while preparing, attaching or reading a probe set.
#[derive(Debug, Error)]
pub enum Error {
    /// Bad input from the user: a malformed address, an unknown interface, netns or reason.
    #[error("{0}")]
    Usage(String),
    /// The process may not do this: missing capabilities, hidden kernel symbols.
    #[error("missing privilege: {0}")]
    Privilege(String),
    /// The running kernel lacks something a set needs (BTF, a probe point, tracefs).
    #[error("{0}")]
    MissingFeature(String),
    /// The kernel refused to load a set's programs.
    #[error("loading the {set} programs ({plan}) failed: {source}; {explanation}")]
    Load {
        /// Probe set.
        set: &'static str,
        /// Plan that was being loaded.
        plan: String,
        /// What libbpf's log says this kernel lacks.
        explanation: String,
        /// The libbpf error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A set's BPF object lacks a map the kit expects (a bug in the set).
    #[error("BPF object has no map '{0}' (does the set include np_common.h?)")]
    MissingMap(String),
    /// A libbpf call failed.
    #[error("{context}: {source}")]
    Bpf {
        /// What was being done.
        context: String,
        /// The libbpf error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A system call or file access failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the report failed (a full disk, `>/dev/full`).
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// Exit code a tool returns for this error: 2 for bad input, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Builds a usage error.
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    /// Builds a missing-feature error.
    pub fn missing(msg: impl Into<String>) -> Self {
        Error::MissingFeature(msg.into())
    }

    /// Builds a privilege error.
    pub fn privilege(msg: impl Into<String>) -> Self {
        Error::Privilege(msg.into())
    }

    /// Builds an I/O error from a description and an `io::Error`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result with the library's error.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds context to libbpf and I/O errors.
pub trait Context<T> {
    /// Wraps the error with a description of what was being done.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, libbpf_rs::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Bpf {
            context: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}
