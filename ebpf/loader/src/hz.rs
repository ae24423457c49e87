//! The running kernel's tick rate: [`measure`] reads the kernel's jiffies from `/proc` against
//! `CLOCK_MONOTONIC`. Everything else ([`Hz`], the method, the candidates, the parsing of the
//! jiffies sources) is the pure [`sipsctp_ebpf_events::hz`], re-exported here.

use std::time::Instant;

pub use sipsctp_ebpf_events::hz::*;

/// Measures the running kernel's HZ (see [`sipsctp_ebpf_events::hz`]). Blocks for about
/// [`WINDOW`] plus up to two ticks.
///
/// # Errors
/// When no jiffies source is readable, jiffies stall, or the rate is implausible.
pub fn measure() -> Result<Hz, HzError> {
    let start = Instant::now();
    measure_with(read_jiffies, || start.elapsed(), std::thread::sleep)
}

/// Reads the current jiffies from `/proc/schedstat`, else `/proc/timer_list`.
fn read_jiffies() -> Result<u64, HzError> {
    let schedstat = match std::fs::read_to_string("/proc/schedstat") {
        Ok(text) => match parse_schedstat(&text) {
            Some(j) => return Ok(j),
            None => "no timestamp line".to_owned(),
        },
        Err(e) => e.to_string(),
    };
    let timer_list = match std::fs::read_to_string("/proc/timer_list") {
        Ok(text) => match parse_timer_list(&text) {
            Some(j) => return Ok(j),
            None => "no jiffies line".to_owned(),
        },
        Err(e) => e.to_string(),
    };
    Err(HzError::NoJiffies {
        schedstat,
        timer_list,
    })
}
