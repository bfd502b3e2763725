//! The memory budget for decoding pictures.
//!
//! A decoded picture costs what its pixels cost, whatever its file weighs: a
//! 200 kB JPEG of 40 megapixels needs 120 MB to decode. Each picture is
//! therefore admitted by its decoded size (from its header, before a pixel
//! exists) against a budget of bytes in flight: a semaphore counted in KiB.
//! A picture waits while the budget is spent, up to a bound, then is refused
//! as busy (503 + Retry-After); one larger than the whole budget could never
//! be admitted and is refused at once (413). Together with reducing each
//! picture to its model input as soon as it is decoded, this bounds the
//! memory pictures take however many arrive at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const MIB: u64 = 1 << 20;
/// The semaphore counts KiB: `acquire_many` takes a `u32`, so bytes would
/// cap a picture at 4 GiB; KiB cap it at 4 TiB.
const UNIT: u64 = 1 << 10;

/// The smallest automatic budget's cap, and what each core adds to it: a
/// 40-megapixel JPEG takes ~125 MiB to decode and reduce, so a 2-core
/// machine decodes 4 of them at once, already more than its cores can work
/// on. More in flight would only hold memory, not go faster.
pub(crate) const MIN_AUTO_CAP: u64 = 512 * MIB;
pub(crate) const CAP_PER_CORE: u64 = 128 * MIB;
/// Default bound on a picture's wait for the budget, in milliseconds.
pub(crate) const DEFAULT_WAIT_MS: u64 = 30_000;

/// How the budget is decided (from settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPolicy {
    /// A set budget in bytes (`CATDOG_MEMORY_BUDGET`); `None`: decided from
    /// the memory the process may use, once the model is loaded.
    pub(crate) budget: Option<u64>,
    /// The function's memory on Lambda (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`,
    /// in MB as Lambda counts them: MiB); `None` elsewhere.
    pub(crate) lambda_memory_mb: Option<u64>,
    /// How long a picture may wait for the budget before a 503.
    pub(crate) wait: Duration,
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        Self {
            budget: None,
            lambda_memory_mb: None,
            wait: Duration::from_millis(DEFAULT_WAIT_MS),
        }
    }
}

/// Where a budget came from, as the log and `GET /model` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BudgetSource {
    /// `CATDOG_MEMORY_BUDGET`.
    Set,
    /// Half of what `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` leaves after the
    /// process's footprint with the model loaded, capped.
    Lambda,
    /// Half of what the machine's memory (or the cgroup's limit) leaves
    /// after the process's footprint with the model loaded, capped.
    Machine,
    /// Nothing could be read about the memory (not Linux): the cap alone.
    Fallback,
}

/// A budget decided, with the figures it was decided from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct BudgetInfo {
    /// Bytes of decoded pictures in flight at most.
    pub(crate) bytes: u64,
    pub(crate) source: BudgetSource,
    /// The memory the process may use, when known.
    pub(crate) limit_bytes: Option<u64>,
    /// The process's resident memory when the budget was decided (the model
    /// loaded and warmed up), when known.
    pub(crate) footprint_bytes: Option<u64>,
    /// A picture's longest wait for the budget, ms.
    pub(crate) wait_ms: u64,
}

impl MemoryPolicy {
    /// Decides the budget now: call it once the model is loaded, so the
    /// process's footprint includes it.
    pub(crate) fn decide(&self) -> BudgetInfo {
        let footprint = process_rss();
        let (limit, source) = match self.lambda_memory_mb {
            Some(mb) => (Some(mb * MIB), BudgetSource::Lambda),
            None => (machine_memory(), BudgetSource::Machine),
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as u64;
        let cap = MIN_AUTO_CAP.max(cores * CAP_PER_CORE);
        let (bytes, source) = match (self.budget, limit, footprint) {
            (Some(set), ..) => (set, BudgetSource::Set),
            (None, Some(limit), Some(used)) => (auto_budget(limit, used, cap), source),
            _ => (cap, BudgetSource::Fallback),
        };
        BudgetInfo {
            bytes,
            source,
            limit_bytes: limit,
            footprint_bytes: footprint,
            wait_ms: self.wait.as_millis() as u64,
        }
    }
}

/// Half of what the process's footprint leaves of `limit` (the other half
/// is for everything the budget does not count: request bodies, inference
/// buffers, the allocator's slack), at most `cap`.
fn auto_budget(limit: u64, footprint: u64, cap: u64) -> u64 {
    (limit.saturating_sub(footprint) / 2).min(cap)
}

/// Why a picture was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BudgetError {
    #[error(
        "decoding this {width}×{height} picture needs {} MiB, more than the whole memory budget \
         of {} MiB (CATDOG_MEMORY_BUDGET, or the function's memory on Lambda); send a smaller picture",
        mib(*need), mib(*budget)
    )]
    Never {
        width: u32,
        height: u32,
        need: u64,
        budget: u64,
    },
    #[error(
        "the memory budget for decoding ({} MiB) stayed in use by other pictures for {waited_ms} ms; retry shortly",
        mib(*budget)
    )]
    Busy { budget: u64, waited_ms: u64 },
}

fn mib(bytes: u64) -> String {
    let m = bytes as f64 / MIB as f64;
    if m >= 10.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

/// The budget: cheap to clone, shared by every request of one model.
#[derive(Debug, Clone)]
pub(crate) struct MemoryBudget {
    semaphore: Arc<Semaphore>,
    info: BudgetInfo,
    units: u32,
}

/// A picture's share of the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    _permit: Option<OwnedSemaphorePermit>,
    /// How long the picture waited for it, ms.
    pub(crate) waited_ms: f64,
}

impl MemoryBudget {
    pub(crate) fn new(info: BudgetInfo) -> Self {
        let units = (info.bytes / UNIT).clamp(1, u64::from(u32::MAX)) as u32;
        Self {
            semaphore: Arc::new(Semaphore::new(units as usize)),
            info,
            units,
        }
    }

    pub(crate) fn info(&self) -> BudgetInfo {
        self.info
    }

    /// Bytes of the budget in use now.
    pub(crate) fn in_use(&self) -> u64 {
        u64::from(self.units).saturating_sub(self.semaphore.available_permits() as u64) * UNIT
    }

    /// Refuses at once a picture that could never be admitted (`Never`).
    pub(crate) fn check(&self, width: u32, height: u32, bytes: u64) -> Result<u32, BudgetError> {
        let units = bytes.div_ceil(UNIT).max(1);
        if units > u64::from(self.units) {
            return Err(BudgetError::Never {
                width,
                height,
                need: bytes,
                budget: self.info.bytes,
            });
        }
        Ok(units as u32)
    }

    /// Waits (first come, first served) until `bytes` of the budget are free
    /// for a `width`×`height` picture, at most the policy's wait.
    pub(crate) async fn admit(
        &self,
        width: u32,
        height: u32,
        bytes: u64,
    ) -> Result<Admitted, BudgetError> {
        let units = self.check(width, height, bytes)?;
        let started = Instant::now();
        let wait = Duration::from_millis(self.info.wait_ms);
        let permit =
            tokio::time::timeout(wait, self.semaphore.clone().acquire_many_owned(units)).await;
        match permit {
            Ok(Ok(permit)) => Ok(Admitted {
                _permit: Some(permit),
                waited_ms: started.elapsed().as_secs_f64() * 1e3,
            }),
            // The semaphore is never closed; a closed one would only mean
            // nothing is left to protect.
            Ok(Err(_)) => Ok(Admitted {
                _permit: None,
                waited_ms: 0.0,
            }),
            Err(_) => Err(BudgetError::Busy {
                budget: self.info.bytes,
                waited_ms: wait.as_millis() as u64,
            }),
        }
    }
}

/// Makes freed picture memory go back to the system. glibc's malloc
/// otherwise raises its mmap threshold after each large free (up to 32 MiB),
/// so request bodies, decoded photos and resize buffers then come from its
/// per-thread arenas, where freed memory stays resident: measured in the
/// soak (BENCHMARKS.md), RSS at rest grew 42% in ten minutes that way. A
/// fixed threshold keeps every allocation of 256 KiB or more in its own
/// mapping, unmapped when freed; fewer arenas (2 per core, not 8) bound
/// what small allocations can strand. Call it before any thread starts.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        // SAFETY: mallopt only sets malloc's tunables; called before threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
            libc::mallopt(libc::M_ARENA_MAX, (2 * cores) as libc::c_int);
        }
    }
}

/// The process's resident memory now (Linux: `VmRSS` in `/proc/self/status`).
pub(crate) fn process_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kib(&status, "VmRSS:")
}

/// A `Name:   123 kB` line of a `/proc` status or meminfo text, in bytes.
fn status_kib(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The memory this process may use: the cgroup's limit (a container's,
/// systemd's) when it has one, else the machine's physical memory.
pub(crate) fn machine_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| status_kib(&m, "MemTotal:"));
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: u64, wait_ms: u64) -> MemoryBudget {
        MemoryBudget::new(BudgetInfo {
            bytes,
            source: BudgetSource::Set,
            limit_bytes: None,
            footprint_bytes: None,
            wait_ms,
        })
    }

    #[test]
    fn the_automatic_budget_is_half_of_what_is_left_capped() {
        // Lambda 3008 MB, a 100 MiB process: half of 2908 MiB, capped at 512 MiB.
        assert_eq!(auto_budget(3008 * MIB, 100 * MIB, 512 * MIB), 512 * MIB);
        // Lambda 1024 MB with a 600 MiB VGG16: 212 MiB.
        assert_eq!(auto_budget(1024 * MIB, 600 * MIB, 512 * MIB), 212 * MIB);
        // Nothing left: nothing to decode with (every picture is then refused, clearly).
        assert_eq!(auto_budget(512 * MIB, 900 * MIB, 512 * MIB), 0);
        let lambda = MemoryPolicy {
            lambda_memory_mb: Some(3008),
            ..MemoryPolicy::default()
        }
        .decide();
        assert_eq!(lambda.source, BudgetSource::Lambda);
        assert_eq!(lambda.limit_bytes, Some(3008 * MIB));
        let set = MemoryPolicy {
            budget: Some(77 * MIB),
            lambda_memory_mb: Some(3008),
            ..MemoryPolicy::default()
        }
        .decide();
        assert_eq!((set.bytes, set.source), (77 * MIB, BudgetSource::Set));
    }

    #[test]
    fn meminfo_is_read_in_kib() {
        let text = "MemTotal:       24576000 kB\nMemFree:        1000 kB\n";
        assert_eq!(status_kib(text, "MemTotal:"), Some(24_576_000 * 1024));
        assert!(process_rss().is_some_and(|r| r > MIB));
    }

    #[tokio::test]
    async fn pictures_wait_for_the_budget_then_are_refused_as_busy() {
        let b = budget(10 * MIB, 50);
        let first = b.admit(10, 10, 6 * MIB).await.unwrap();
        assert_eq!(b.in_use(), 6 * MIB);
        // 6 + 6 > 10: waits 50 ms, then busy.
        let err = b.admit(10, 10, 6 * MIB).await.unwrap_err();
        assert!(
            matches!(err, BudgetError::Busy { waited_ms: 50, .. }),
            "{err}"
        );
        // Once the first is done, the second fits.
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move { b.admit(10, 10, 6 * MIB).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        let second = waiting.await.unwrap().unwrap();
        assert!(second.waited_ms >= 5.0, "{}", second.waited_ms);
        drop(second);
        assert_eq!(b.in_use(), 0);
    }

    #[tokio::test]
    async fn a_picture_over_the_whole_budget_is_refused_at_once() {
        let b = budget(10 * MIB, 60_000);
        let started = Instant::now();
        let err = b.admit(7296, 5472, 11 * MIB).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            err.to_string(),
            "decoding this 7296×5472 picture needs 11 MiB, more than the whole memory budget of \
             10 MiB (CATDOG_MEMORY_BUDGET, or the function's memory on Lambda); send a smaller picture"
        );
        // Exactly the budget fits.
        assert!(b.admit(1, 1, 10 * MIB).await.is_ok());
    }
}
