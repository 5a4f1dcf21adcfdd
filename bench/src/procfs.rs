//! What `/proc` says about a process: CPU time and memory, for the
//! benchmark's figures.

/// Whose CPU time [`cpu_secs`] reads.
#[derive(Clone, Copy)]
pub(crate) enum Cpu {
    /// The process's own.
    Own,
    /// Its reaped children's.
    Children,
}

/// CPU seconds of `pid` ("self" for this process); NaN when unreadable.
pub(crate) fn cpu_secs(pid: &str, whose: Cpu) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The command name (field 2) may hold spaces; it ends at the
            // last ')', so `after` starts at field 3. utime, stime are
            // fields 14-15, cutime, cstime 16-17, in 100 Hz clock ticks.
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let first = match whose {
                Cpu::Own => 11,
                Cpu::Children => 13,
            };
            let user: f64 = fields.get(first)?.parse().ok()?;
            let system: f64 = fields.get(first + 1)?.parse().ok()?;
            Some((user + system) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// A `/proc/self/status` memory field (`VmRSS:`, `VmHWM:`) in KiB; 0 when
/// unreadable.
pub(crate) fn self_status_kib(field: &str) -> u64 {
    status_kib("self", field)
}

/// A `/proc/<pid>/status` memory field (`VmRSS:`, `VmHWM:`) in KiB; 0 when
/// unreadable.
pub(crate) fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
