//! A container's stdout and stderr: kept in a ring bounded in bytes (the oldest output goes
//! first), when asked copied to the terminal as it arrives, and, for tasks the server runs,
//! appended to the task's log file (see [`crate::logs`]).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::logs::TaskLogWriter;

/// Which of the guest's streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Whether output is also copied to this process's own stdout/stderr (for `wasmgate run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tee {
    None,
    Terminal,
}

/// One write of the guest.
#[derive(Debug, Clone)]
pub struct LogChunk {
    pub at: SystemTime,
    pub stream: LogStream,
    pub bytes: Vec<u8>,
}

/// The bounded log of one container.
#[derive(Debug)]
pub struct ContainerLog {
    capacity_bytes: usize,
    tee: Tee,
    /// The task's log file and this container's name in it.
    file: Option<(Arc<TaskLogWriter>, String)>,
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    chunks: VecDeque<LogChunk>,
    held_bytes: usize,
    dropped_bytes: u64,
    /// The last complete or partial line written to stderr, for exit reasons.
    last_stderr_line: Vec<u8>,
    stderr_line_done: bool,
}

/// The longest stderr line kept for exit reasons.
const MAX_REASON_LINE: usize = 512;

impl ContainerLog {
    /// A log that holds at most `capacity_bytes` of output.
    pub fn new(capacity_bytes: usize, tee: Tee) -> Self {
        Self {
            capacity_bytes,
            tee,
            file: None,
            inner: Mutex::new(Ring::default()),
        }
    }

    /// Also appends every write to `file`, as container `name`'s output.
    pub fn with_file(mut self, file: Arc<TaskLogWriter>, name: impl Into<String>) -> Self {
        self.file = Some((file, name.into()));
        self
    }

    pub fn write(&self, stream: LogStream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.tee == Tee::Terminal {
            // The terminal going away must not stop the guest: ignore write errors.
            let _ = match stream {
                LogStream::Stdout => std::io::stdout().lock().write_all(bytes),
                LogStream::Stderr => std::io::stderr().lock().write_all(bytes),
            };
        }
        if let Some((file, name)) = &self.file {
            let stream = match stream {
                LogStream::Stdout => crate::logs::Stream::Stdout,
                LogStream::Stderr => crate::logs::Stream::Stderr,
            };
            file.append(name, stream, bytes);
        }
        let mut ring = self.lock();
        if stream == LogStream::Stderr {
            ring.remember_stderr(bytes);
        }
        // Keep only the tail of a write that alone exceeds the capacity.
        let kept = &bytes[bytes.len().saturating_sub(self.capacity_bytes)..];
        ring.dropped_bytes += (bytes.len() - kept.len()) as u64;
        ring.held_bytes += kept.len();
        ring.chunks.push_back(LogChunk {
            at: SystemTime::now(),
            stream,
            bytes: kept.to_vec(),
        });
        while ring.held_bytes > self.capacity_bytes {
            let Some(oldest) = ring.chunks.pop_front() else {
                break;
            };
            ring.held_bytes -= oldest.bytes.len();
            ring.dropped_bytes += oldest.bytes.len() as u64;
        }
    }

    /// The chunks still held, oldest first.
    pub fn chunks(&self) -> Vec<LogChunk> {
        self.lock().chunks.iter().cloned().collect()
    }

    /// The held output of one stream as text (lossy UTF-8).
    pub fn text(&self, stream: LogStream) -> String {
        let ring = self.lock();
        let bytes: Vec<u8> = ring
            .chunks
            .iter()
            .filter(|c| c.stream == stream)
            .flat_map(|c| c.bytes.iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Bytes of output that were dropped to stay within the capacity.
    pub fn dropped_bytes(&self) -> u64 {
        self.lock().dropped_bytes
    }

    /// The last non-empty line the guest wrote to stderr (a panic message, say).
    pub fn last_stderr_line(&self) -> Option<String> {
        let ring = self.lock();
        let line = String::from_utf8_lossy(&ring.last_stderr_line)
            .trim()
            .to_string();
        (!line.is_empty()).then_some(line)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Ring {
    fn remember_stderr(&mut self, bytes: &[u8]) {
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = line.ends_with(b"\n");
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            if self.stderr_line_done {
                // Blank lines and runtime hints ("note: run with `RUST_BACKTRACE=1` ...") say
                // less than the line before them.
                if text.iter().all(u8::is_ascii_whitespace) || text.starts_with(b"note: ") {
                    continue;
                }
                self.last_stderr_line.clear();
            }
            let room = MAX_REASON_LINE.saturating_sub(self.last_stderr_line.len());
            self.last_stderr_line
                .extend_from_slice(&text[..text.len().min(room)]);
            self.stderr_line_done = complete;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_oldest_output_beyond_capacity() {
        let log = ContainerLog::new(10, Tee::None);
        log.write(LogStream::Stdout, b"12345");
        log.write(LogStream::Stdout, b"67890");
        log.write(LogStream::Stdout, b"abc");
        assert_eq!(log.text(LogStream::Stdout), "67890abc");
        assert_eq!(log.dropped_bytes(), 5);
        log.write(LogStream::Stdout, b"0123456789XYZ");
        assert_eq!(log.text(LogStream::Stdout), "3456789XYZ");
    }

    #[test]
    fn remembers_last_stderr_line_across_writes() {
        let log = ContainerLog::new(1024, Tee::None);
        log.write(LogStream::Stderr, b"first\npanicked at ");
        log.write(
            LogStream::Stderr,
            b"src/main.rs: boom\n\nnote: run with `RUST_BACKTRACE=1`\n",
        );
        assert_eq!(
            log.last_stderr_line().as_deref(),
            Some("panicked at src/main.rs: boom")
        );
    }
}
