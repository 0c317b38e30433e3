//! The one error type of the library, with the exit code a tool should use for it.
use thiserror::Error;

/// Everything that can go wrong while preparing, attaching or reading a probe set.
#[derive(Debug, Error)]
pub enum Error {
    /// Bad input from the user: a malformed address, an unknown interface, netns or reason.
    #[error("{0}")]
    Usage(String),
    /// The environment is missing something: privileges, BTF, a kernel feature.
    #[error("{0}")]
    Environment(String),
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

    /// Builds an environment error.
    pub fn env(msg: impl Into<String>) -> Self {
        Error::Environment(msg.into())
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
