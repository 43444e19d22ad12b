//! Task logs on disk: what every container of a task wrote to stdout and stderr, one file of
//! JSON lines per task under `DATA_DIR/logs/`, capped in size, readable while the task runs (to
//! follow it) and after it stopped (until the task is forgotten).
//!
//! This is wasmgate's `awslogs`: the agent writes, the API reads. In one process they share the
//! directory; an agent on another host would ship the same records.
//!
//! Architecture invariant: a record is written whole or not at all, never rewritten; sequence
//! numbers only grow within a task, so a reader's cursor (`after`) never repeats a record and
//! skips one only when the size cap dropped it (which the page says).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The largest page a read returns, in bytes of messages.
const MAX_PAGE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("task {0}: no logs (unknown task, or forgotten)")]
    UnknownTask(String),
    #[error("task {0}: not a task id")]
    BadTaskId(String),
    #[error("task logs {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which stream a record came from, as readers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One write of one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Sequence number within the task, from 1.
    #[serde(rename = "n")]
    pub seq: u64,
    /// When it was written: epoch seconds, millisecond resolution.
    #[serde(rename = "t")]
    pub at: f64,
    #[serde(rename = "c")]
    pub container: String,
    #[serde(rename = "s")]
    pub stream: Stream,
    /// The bytes written, as UTF-8 (invalid sequences replaced).
    #[serde(rename = "m")]
    pub message: String,
}

/// Records after a cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogPage {
    pub records: Vec<LogRecord>,
    /// The cursor for the next read: the last sequence number returned (or `after` if none).
    pub next: u64,
    /// Records between `after` and the first returned one were dropped by the size cap.
    pub truncated: bool,
}

/// The directory of task logs, and the cap each task's log keeps to.
#[derive(Debug, Clone)]
pub struct LogStore {
    dir: PathBuf,
    max_bytes_per_task: u64,
    /// Writers of tasks whose records arrive from other hosts ([`LogStore::import`]).
    imports: Arc<Mutex<std::collections::HashMap<String, Arc<TaskLogWriter>>>>,
}

impl LogStore {
    /// Logs under `dir`, each task's holding at most about `max_bytes_per_task` (the newest
    /// half is always kept whole; older output is dropped in halves).
    pub fn new(dir: impl Into<PathBuf>, max_bytes_per_task: u64) -> Self {
        Self {
            dir: dir.into(),
            max_bytes_per_task: max_bytes_per_task.max(1024),
            imports: Arc::default(),
        }
    }

    fn current(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{task_id}.log"))
    }

    fn rotated(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{task_id}.log.1"))
    }

    /// Starts a task's log (an empty file, so that readers can tell a quiet task from an
    /// unknown one).
    pub fn create(&self, task_id: &str) -> Result<Arc<TaskLogWriter>, LogError> {
        check_id(task_id)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        // The file is made with the task's first record: most tasks of a large service print
        // nothing, and creating a thousand empty files costs more than placing the tasks.
        Ok(Arc::new(TaskLogWriter {
            state: Mutex::new(WriterState {
                current: self.current(task_id),
                rotated: self.rotated(task_id),
                file: LogFile::NotYet,
                size: 0,
                next_seq: 1,
                half_cap: self.max_bytes_per_task / 2,
            }),
        }))
    }

    /// Keeps records a task on another host wrote, with their own sequence numbers; records
    /// already kept (a report delivered twice) are skipped.
    pub fn import(&self, task_id: &str, records: &[LogRecord]) -> Result<(), LogError> {
        let writer = {
            let mut imports = self.imports.lock().unwrap_or_else(|p| p.into_inner());
            match imports.get(task_id) {
                Some(writer) => writer.clone(),
                None => {
                    let writer = self.create(task_id)?;
                    if let Ok(page) = self.read(task_id, 0)
                        && let Some(last) = page.records.last()
                    {
                        writer
                            .state
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .next_seq = last.seq + 1;
                    }
                    imports.insert(task_id.to_string(), writer.clone());
                    writer
                }
            }
        };
        for record in records {
            writer.write(record.clone());
        }
        Ok(())
    }

    /// Records with sequence numbers above `after`, oldest first, up to about a megabyte.
    pub fn read(&self, task_id: &str, after: u64) -> Result<LogPage, LogError> {
        check_id(task_id)?;
        // A rotation between reading the two files would hide the records it moved: the
        // rotated file's end and the current file's start then leave a gap. Read again.
        let mut attempt = 0;
        loop {
            let older = read_records(&self.rotated(task_id))?;
            let newer = match read_records(&self.current(task_id))? {
                Some(records) => records,
                None if older.is_some() => Vec::new(),
                None => return Err(LogError::UnknownTask(task_id.to_string())),
            };
            let older = older.unwrap_or_default();
            let gap = match (older.last(), newer.first()) {
                (Some(last), Some(first)) => first.seq > last.seq + 1,
                _ => false,
            };
            attempt += 1;
            if gap && attempt < 5 {
                continue;
            }
            return Ok(page_after(older.into_iter().chain(newer), after));
        }
    }

    /// Deletes a task's log.
    pub fn remove(&self, task_id: &str) {
        self.imports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task_id);
        if check_id(task_id).is_err() {
            return;
        }
        for path in [self.current(task_id), self.rotated(task_id)] {
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), %error, "cannot remove a task log");
            }
        }
    }

    /// The ids of every task that has a log.
    pub fn task_ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(".log").or(name.strip_suffix(".log.1"))?;
                Some(id.to_string())
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Task ids become file names: only the characters ids are made of.
fn check_id(task_id: &str) -> Result<(), LogError> {
    let ok = !task_id.is_empty()
        && task_id.len() <= 64
        && task_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LogError::BadTaskId(task_id.to_string()))
    }
}

/// Every complete record in `path`; `None` if the file does not exist. A line still being
/// written (no newline yet) is left for the next read.
fn read_records(path: &Path) -> Result<Option<Vec<LogRecord>>, LogError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LogError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(end) => &bytes[..=end],
        None => &[][..],
    };
    Ok(Some(
        complete
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect(),
    ))
}

fn page_after(records: impl Iterator<Item = LogRecord>, after: u64) -> LogPage {
    let mut page = LogPage {
        next: after,
        ..LogPage::default()
    };
    let mut bytes = 0;
    for record in records.filter(|r| r.seq > after) {
        if page.records.is_empty() && record.seq > after + 1 {
            page.truncated = true;
        }
        if bytes > 0 && bytes + record.message.len() > MAX_PAGE_BYTES {
            break;
        }
        bytes += record.message.len();
        page.next = record.seq;
        page.records.push(record);
    }
    page
}

/// Appends one task's records; shared by its containers' logs.
#[derive(Debug)]
pub struct TaskLogWriter {
    state: Mutex<WriterState>,
}

/// A task log's file.
#[derive(Debug)]
enum LogFile {
    /// Nothing written yet: the file is opened (created, or appended to) at the first record.
    NotYet,
    Open(File),
    /// A write failed: the task runs on without a log file rather than fail.
    Failed,
}

#[derive(Debug)]
struct WriterState {
    current: PathBuf,
    rotated: PathBuf,
    file: LogFile,
    size: u64,
    next_seq: u64,
    half_cap: u64,
}

impl TaskLogWriter {
    /// Appends what `container` wrote to `stream`.
    pub fn append(&self, container: &str, stream: Stream, bytes: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(state.file, LogFile::Failed) {
            return;
        }
        // A single write larger than the kept half keeps its tail.
        let room = (state.half_cap as usize).saturating_sub(256 + container.len());
        let bytes = &bytes[bytes.len().saturating_sub(room)..];
        let record = LogRecord {
            seq: state.next_seq,
            at: epoch_seconds(SystemTime::now()),
            container: container.to_string(),
            stream,
            message: String::from_utf8_lossy(bytes).into_owned(),
        };
        state.write(&record);
    }

    /// Appends a record written elsewhere, unless its sequence number is behind this log's.
    fn write(&self, record: LogRecord) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(state.file, LogFile::Failed) || record.seq < state.next_seq {
            return;
        }
        state.next_seq = record.seq;
        state.write(&record);
    }
}

impl WriterState {
    /// Writes `record` as one line, rotating first when it would pass the half cap.
    fn write(&mut self, record: &LogRecord) {
        let state = self;
        let Ok(mut line) = serde_json::to_vec(record) else {
            return;
        };
        line.push(b'\n');
        if matches!(state.file, LogFile::NotYet) {
            state.open();
        }
        if state.size > 0 && state.size + line.len() as u64 > state.half_cap {
            state.rotate();
        }
        let written = match &mut state.file {
            LogFile::Open(file) => file.write_all(&line),
            LogFile::NotYet | LogFile::Failed => return,
        };
        match written {
            Ok(()) => {
                state.size += line.len() as u64;
                state.next_seq += 1;
            }
            Err(error) => {
                tracing::warn!(path = %state.current.display(), %error, "cannot write the task log; its further output is not kept");
                state.file = LogFile::Failed;
            }
        }
    }

    /// Opens the current file for appending (a task's log kept from before, such as another
    /// host's task whose records arrive again, continues where it was).
    fn open(&mut self) {
        let opened = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.current);
        match opened {
            Ok(file) => {
                self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = LogFile::Open(file);
            }
            Err(error) => {
                tracing::warn!(path = %self.current.display(), %error, "cannot create the task log; its output is not kept");
                self.file = LogFile::Failed;
            }
        }
    }

    /// The current file becomes the rotated one (replacing the older half), and a new one starts.
    fn rotate(&mut self) {
        let reopened = std::fs::rename(&self.current, &self.rotated).and_then(|()| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.current)
        });
        match reopened {
            Ok(file) => {
                self.file = LogFile::Open(file);
                self.size = 0;
            }
            Err(error) => {
                tracing::warn!(path = %self.current.display(), %error, "cannot rotate the task log; its further output is not kept");
                self.file = LogFile::Failed;
            }
        }
    }
}

/// Epoch seconds with millisecond resolution, as ECS timestamps go.
pub fn epoch_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_after_a_cursor_and_follows() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path(), 1 << 20);
        let writer = store.create("t1").unwrap();
        writer.append("app", Stream::Stdout, b"one\n");
        writer.append("side", Stream::Stderr, b"two\n");
        let page = store.read("t1", 0).unwrap();
        let messages: Vec<_> = page.records.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(messages, ["one\n", "two\n"]);
        assert_eq!((page.next, page.truncated), (2, false));
        assert_eq!(page.records[1].container, "side");
        assert_eq!(page.records[1].stream, Stream::Stderr);
        writer.append("app", Stream::Stdout, b"three\n");
        let page = store.read("t1", 2).unwrap();
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].message, "three\n");
        assert_eq!(store.read("t1", 3).unwrap().records, []);
    }

    #[test]
    fn keeps_to_the_cap_and_says_when_records_were_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path(), 4096);
        let writer = store.create("t2").unwrap();
        for i in 0..500 {
            writer.append("app", Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        let on_disk: u64 = ["t2.log", "t2.log.1"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
            .map(|m| m.len())
            .sum();
        assert!(on_disk <= 4096, "{on_disk} bytes on disk");
        let page = store.read("t2", 0).unwrap();
        assert!(page.truncated);
        assert_eq!(page.records.last().unwrap().message, "line 499\n");
        assert_eq!(page.next, 500);
        // Sequence numbers run on without a gap inside what is kept.
        for pair in page.records.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + 1);
        }
    }

    #[test]
    fn unknown_and_hostile_task_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path(), 4096);
        assert!(matches!(
            store.read("nope", 0),
            Err(LogError::UnknownTask(_))
        ));
        assert!(matches!(
            store.read("../etc/passwd", 0),
            Err(LogError::BadTaskId(_))
        ));
        // A task that has printed nothing has no file (the API answers an empty page).
        let quiet = store.create("quiet").unwrap();
        assert!(matches!(
            store.read("quiet", 0),
            Err(LogError::UnknownTask(_))
        ));
        assert!(store.task_ids().is_empty());
        quiet.append("app", Stream::Stdout, b"hello\n");
        assert_eq!(store.read("quiet", 0).unwrap().records.len(), 1);
        assert_eq!(store.task_ids(), ["quiet"]);
        store.remove("quiet");
        assert!(store.task_ids().is_empty());
    }
}
