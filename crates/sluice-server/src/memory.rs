//! Memory readings for the memory SLIs: resident set size, the cgroup limit (what a Kubernetes
//! memory limit becomes) and physical RAM on the host, and on a GPU the device's own count.

use std::fs;

/// Resident set size of this process in bytes (Linux `/proc/self/statm`); 0 elsewhere.
pub fn rss_bytes() -> u64 {
    let Ok(statm) = fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The cgroup memory limit if one is set (v2 `memory.max`, else v1 `memory.limit_in_bytes`).
pub fn cgroup_limit_bytes() -> Option<u64> {
    for path in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Ok(text) = fs::read_to_string(path) {
            let text = text.trim();
            if let Ok(v) = text.parse::<u64>() {
                // v1 reports "no limit" as a huge number near u64::MAX.
                if v < (1u64 << 60) {
                    return Some(v);
                }
            }
        }
    }
    None
}

/// Physical memory from `/proc/meminfo`.
pub fn total_ram_bytes() -> Option<u64> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Accelerator memory as the device reports it, `(used, total)` bytes: on CUDA the driver's
/// free/total for the device's context (`cuMemGetInfo`; "used" counts every allocation on the
/// GPU, ours and other processes', as nvidia-smi does). `None` on CPU, or when the driver
/// cannot answer.
pub fn device_memory(device: &candle_core::Device) -> Option<(u64, u64)> {
    #[cfg(feature = "cuda")]
    if let Ok(cuda) = device.as_cuda_device() {
        return match cuda.cuda_stream().context().mem_get_info() {
            Ok((free, total)) => Some(((total - free) as u64, total as u64)),
            Err(e) => {
                tracing::warn!(error = %e, "failed to read the GPU's memory use");
                None
            }
        };
    }
    let _ = device;
    None
}

/// What the server may use: the cgroup limit when set, else physical RAM.
pub fn default_budget_bytes() -> u64 {
    cgroup_limit_bytes()
        .or_else(total_ram_bytes)
        .unwrap_or(8 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_plausible_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes() > 1 << 20);
            assert!(total_ram_bytes().unwrap() > 1 << 28);
            assert!(default_budget_bytes() > 0);
        }
    }

    #[test]
    fn a_cpu_has_no_device_memory_to_report() {
        // The scheduler then reports weights + KV against the budget as "vram".
        assert_eq!(device_memory(&candle_core::Device::Cpu), None);
    }
}
