//! The live output of the runs executing here: the [`executor`] appends
//! what a run's pipes give (stdout and stderr interleaved, as read) to its
//! [`LiveRun`], and any number of readers (the output route of [`http`])
//! follow it from the start.
//!
//! Memory is bounded per run, whatever the readers do: a run keeps its
//! first and last `max_output_bytes / 2` bytes (the cap of the stored
//! output), addressed by their offset in everything it printed. A reader
//! only holds its offset: one that falls behind the kept tail, or joins
//! after the middle was dropped, is told how many bytes it missed and
//! goes on from the tail. Nobody waits for a reader.
//!
//! A run stays listed for [`LINGER`] after it ended (at most
//! [`MAX_ENDED`] such runs), so a reader arriving just after the end still
//! gets the whole output and how it ended.
//!
//! [`executor`]: crate::executor
//! [`http`]: crate::http

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rcron_shared::live::RunEnd;
use tokio::sync::watch;

/// How long an ended run's output stays readable here.
pub const LINGER: Duration = Duration::from_secs(30);

/// Most ended runs kept readable at once (the oldest go first).
pub const MAX_ENDED: usize = 64;

/// Most bytes handed to a reader at once.
const READ_MAX: usize = 16 * 1024;

/// The output of one run so far.
pub struct LiveRun {
    /// The run's job.
    pub job: String,
    tape: Mutex<Tape>,
    /// Moves whenever bytes are appended or the run ends.
    version: watch::Sender<u64>,
}

struct Tape {
    head: Vec<u8>,
    head_cap: usize,
    tail: VecDeque<u8>,
    tail_cap: usize,
    /// Bytes appended in all (the offset after the last one).
    written: u64,
    last_byte: Option<u8>,
    end: Option<RunEnd>,
}

impl Tape {
    fn tail_start(&self) -> u64 {
        self.written - self.tail.len() as u64
    }
}

/// What a reader gets from [`LiveRun::read`].
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes from the reader's offset on.
    Bytes(Vec<u8>),
    /// This many bytes were dropped (the cap) before the reader got them.
    Skipped(u64),
    /// Nothing new yet.
    Nothing,
    /// Everything was read and the run ended so.
    Ended(RunEnd),
}

impl LiveRun {
    fn new(job: String, max_bytes: usize) -> Self {
        let head_cap = max_bytes / 2;
        Self {
            job,
            tape: Mutex::new(Tape {
                head: Vec::new(),
                head_cap,
                tail: VecDeque::new(),
                tail_cap: max_bytes - head_cap,
                written: 0,
                last_byte: None,
                end: None,
            }),
            version: watch::channel(0).0,
        }
    }

    fn tape(&self) -> MutexGuard<'_, Tape> {
        // Held for a copy, never across an await; nothing in it panics.
        self.tape.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Appends what the run printed.
    pub fn push(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        {
            let mut t = self.tape();
            let room = t.head_cap.saturating_sub(t.head.len());
            let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
            t.head.extend_from_slice(to_head);
            if t.tail_cap > 0 {
                let rest = &rest[rest.len().saturating_sub(t.tail_cap)..];
                let overflow = (t.tail.len() + rest.len()).saturating_sub(t.tail_cap);
                t.tail.drain(..overflow);
                t.tail.extend(rest);
            }
            t.written += bytes.len() as u64;
            t.last_byte = bytes.last().copied();
        }
        self.bump();
    }

    /// Marks the start of attempt `attempt` (a retry) in the output.
    pub fn attempt(&self, attempt: u32) {
        let at_line_start = matches!(self.tape().last_byte, None | Some(b'\n'));
        let mark = rcron_shared::live::attempt_mark(attempt, at_line_start);
        self.push(mark.as_bytes());
    }

    /// The run ended so; readers get this once they have read everything.
    pub fn end(&self, end: RunEnd) {
        self.tape().end = Some(end);
        self.bump();
    }

    /// Whether the run has ended.
    pub fn ended(&self) -> bool {
        self.tape().end.is_some()
    }

    /// What a reader at offset `*at` gets next; moves `*at` past it.
    pub fn read(&self, at: &mut u64) -> Piece {
        let t = self.tape();
        let head_len = t.head.len() as u64;
        if *at < head_len {
            let from = *at as usize;
            let to = t.head.len().min(from + READ_MAX);
            *at = to as u64;
            return Piece::Bytes(t.head[from..to].to_vec());
        }
        let tail_start = t.tail_start();
        if *at < tail_start {
            let skipped = tail_start - *at;
            *at = tail_start;
            return Piece::Skipped(skipped);
        }
        if *at < t.written {
            let from = (*at - tail_start) as usize;
            let to = t.tail.len().min(from + READ_MAX);
            *at = tail_start + to as u64;
            return Piece::Bytes(t.tail.range(from..to).copied().collect());
        }
        match &t.end {
            Some(end) => Piece::Ended(end.clone()),
            None => Piece::Nothing,
        }
    }

    /// Resolves when something was appended, or the run ended, since the
    /// receiver last looked.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

struct Listed {
    run: Arc<LiveRun>,
    ended_at: Option<Instant>,
}

/// Every run whose output can be read here, by run id.
pub struct LiveRuns {
    max_bytes: usize,
    runs: Mutex<HashMap<String, Listed>>,
}

impl LiveRuns {
    /// Runs keep at most `max_bytes` of output each (the stored output's cap).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            runs: Mutex::new(HashMap::new()),
        }
    }

    fn runs(&self) -> MutexGuard<'_, HashMap<String, Listed>> {
        // Held for a map operation; nothing in it panics.
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lists run `run_id` of `job`, whose command is about to start.
    pub fn start(&self, run_id: &str, job: &str) -> Arc<LiveRun> {
        let run = Arc::new(LiveRun::new(job.to_string(), self.max_bytes));
        let mut runs = self.runs();
        purge(&mut runs, Instant::now());
        runs.insert(
            run_id.to_string(),
            Listed {
                run: run.clone(),
                ended_at: None,
            },
        );
        run
    }

    /// Run `run_id` ended so: readers are told, and it stays readable for
    /// [`LINGER`].
    pub fn end(&self, run_id: &str, end: RunEnd) {
        let mut runs = self.runs();
        if let Some(listed) = runs.get_mut(run_id) {
            listed.run.end(end);
            listed.ended_at = Some(Instant::now());
        }
        purge(&mut runs, Instant::now());
    }

    /// The output of run `run_id`, if it runs (or just ran) here.
    pub fn get(&self, run_id: &str) -> Option<Arc<LiveRun>> {
        let mut runs = self.runs();
        purge(&mut runs, Instant::now());
        runs.get(run_id).map(|l| l.run.clone())
    }

    /// How many runs are listed (running and lingering).
    pub fn len(&self) -> usize {
        self.runs().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops ended runs past their linger, and the oldest beyond [`MAX_ENDED`].
fn purge(runs: &mut HashMap<String, Listed>, now: Instant) {
    runs.retain(|_, l| l.ended_at.is_none_or(|t| now.duration_since(t) < LINGER));
    let mut ended: Vec<(Instant, String)> = runs
        .iter()
        .filter_map(|(id, l)| l.ended_at.map(|t| (t, id.clone())))
        .collect();
    if ended.len() > MAX_ENDED {
        ended.sort();
        for (_, id) in &ended[..ended.len() - MAX_ENDED] {
            runs.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcron_shared::RunStatus;

    fn end() -> RunEnd {
        RunEnd {
            status: RunStatus::Success,
            reason: None,
            exit_code: Some(0),
            run_id: "r".into(),
        }
    }

    fn read_all(run: &LiveRun, at: &mut u64) -> Vec<Piece> {
        let mut pieces = Vec::new();
        loop {
            match run.read(at) {
                Piece::Nothing => return pieces,
                p @ Piece::Ended(_) => {
                    pieces.push(p);
                    return pieces;
                }
                p => pieces.push(p),
            }
        }
    }

    #[test]
    fn readers_follow_from_the_start_and_end_after_the_last_byte() {
        let runs = LiveRuns::new(1024);
        let run = runs.start("r", "j");
        run.push(b"one\n");
        let mut early = 0;
        assert_eq!(
            read_all(&run, &mut early),
            [Piece::Bytes(b"one\n".to_vec())]
        );
        run.push(b"two");
        run.attempt(2);
        let mut late = 0;
        assert_eq!(
            read_all(&run, &mut late),
            [Piece::Bytes(
                "one\ntwo\n── attempt 2 ──\n".as_bytes().to_vec()
            )]
        );
        runs.end("r", end());
        assert_eq!(
            read_all(&run, &mut early),
            [
                Piece::Bytes("two\n── attempt 2 ──\n".as_bytes().to_vec()),
                Piece::Ended(end())
            ]
        );
        assert!(
            runs.get("r").is_some(),
            "readable for a while after its end"
        );
        assert!(runs.get("other").is_none());
    }

    #[test]
    fn memory_stays_at_the_cap_and_a_late_reader_learns_what_it_missed() {
        let runs = LiveRuns::new(10);
        let run = runs.start("r", "j");
        let mut slow = 2;
        run.push(b"HEAD-");
        run.push(&[b'x'; 10_000]);
        run.push(b"-TAIL");
        {
            let t = run.tape();
            assert_eq!(t.head.len() + t.tail.len(), 10, "bounded");
            assert_eq!(t.written, 10_010);
        }
        let mut fresh = 0;
        assert_eq!(
            read_all(&run, &mut fresh),
            [
                Piece::Bytes(b"HEAD-".to_vec()),
                Piece::Skipped(10_000),
                Piece::Bytes(b"-TAIL".to_vec())
            ]
        );
        assert_eq!(
            read_all(&run, &mut slow),
            [
                Piece::Bytes(b"AD-".to_vec()),
                Piece::Skipped(10_000),
                Piece::Bytes(b"-TAIL".to_vec())
            ]
        );
    }

    #[test]
    fn ended_runs_linger_in_bounded_numbers() {
        let runs = LiveRuns::new(16);
        for i in 0..MAX_ENDED + 5 {
            let id = format!("r{i}");
            runs.start(&id, "j");
            runs.end(&id, end());
        }
        runs.start("running", "j");
        assert_eq!(runs.len(), MAX_ENDED + 1);
        let last = format!("r{}", MAX_ENDED + 4);
        assert!(runs.get(&last).is_some(), "the newest ended stays");
        assert!(runs.get("running").is_some());
    }
}
