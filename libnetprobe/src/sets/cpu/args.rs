//! Flags the cpu tools share (bcc's names), and the run length: a positional duration in
//! seconds, as bcc takes it, or `--duration`.
use super::StackChoice;
use crate::cli::{parse_duration, IntervalArgs};
use crate::error::{Error, Result};
use crate::output::cpu::StackStyle;
use clap::Args;
use std::time::Duration;

/// Stack selection and printing.
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Show user stacks only (no kernel stack walk)
    #[arg(short = 'U', long, conflicts_with = "kernel_stacks_only")]
    pub user_stacks_only: bool,
    /// Show kernel stacks only (no user stack walk)
    #[arg(short = 'K', long)]
    pub kernel_stacks_only: bool,
    /// Folded output: one 'comm;root;...;leaf value' line per stack (flame graph input)
    #[arg(short = 'f', long)]
    pub folded: bool,
    /// Insert a delimiter between kernel and user frames
    #[arg(short = 'd', long)]
    pub delimited: bool,
    /// Show address offsets: frames as function+0xoffset
    #[arg(short = 's', long)]
    pub offset: bool,
    /// Stack map entries: distinct stacks that can be kept
    #[arg(long, default_value_t = super::DEFAULT_STACK_STORAGE, value_name = "N")]
    pub stack_storage_size: u32,
}

impl StackArgs {
    /// Which stacks the kernel walks.
    pub fn choice(&self) -> StackChoice {
        StackChoice {
            user: !self.kernel_stacks_only,
            kernel: !self.user_stacks_only,
            offsets: self.offset,
        }
    }

    /// How stacks are printed.
    pub fn style(&self) -> StackStyle {
        StackStyle {
            folded: self.folded,
            delimited: self.delimited,
        }
    }
}

/// The run length: `[DURATION]` seconds or `--duration SECS`.
#[derive(Debug, Clone, Args)]
pub struct RunLength {
    /// Seconds to run (default: until Ctrl-C)
    #[arg(value_name = "DURATION", conflicts_with = "duration")]
    pub seconds: Option<String>,
    /// Seconds to run (default: until Ctrl-C)
    #[arg(long, value_parser = parse_duration, value_name = "SECS")]
    pub duration: Option<Duration>,
}

/// A report period that never comes: one report, at the end.
const ONE_REPORT: Duration = Duration::from_secs(365 * 24 * 3600);

impl RunLength {
    /// The duration, from whichever form was given.
    pub fn duration(&self) -> Result<Option<Duration>> {
        match &self.seconds {
            Some(s) => parse_duration(s)
                .map(Some)
                .map_err(|e| Error::usage(format!("DURATION {s:?}: {e}"))),
            None => Ok(self.duration),
        }
    }

    /// Intervals of `interval` (`None`: one report at the end) for this run length.
    pub fn intervals(&self, interval: Option<Duration>) -> Result<IntervalArgs> {
        Ok(IntervalArgs {
            interval: interval.unwrap_or(ONE_REPORT),
            duration: self.duration()?,
        })
    }
}
