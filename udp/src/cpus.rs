//! CPU lists and pinning, shared by the server's `--cpus` and the benchmarks' `--cpu`.

use std::io;

/// CPU ids at or above this cannot be pinned to (glibc's `cpu_set_t` holds 1024).
pub const MAX_CPUS: usize = libc::CPU_SETSIZE as usize;

/// Parses a CPU list such as "1", "0,2", "0-3" or "0-1,4", in the order written: the `i`-th id is
/// where the `i`-th core or thread runs. Refused: an empty list, a range that runs backwards, an
/// id listed twice (a typo; pinning two cores to one CPU is never meant) and ids of
/// [`MAX_CPUS`] or more (unpinnable, and a huge range would not fit in memory).
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let bad = |why: &str| {
        format!("invalid CPU list {s:?}: {why} (expected e.g. \"1\", \"0-3\" or \"0,2\")")
    };
    let id = |t: &str| -> Result<usize, String> {
        let cpu: usize = t.trim().parse().map_err(|_| bad("not a number"))?;
        if cpu >= MAX_CPUS {
            return Err(bad(&format!("CPU {cpu} is not below {MAX_CPUS}")));
        }
        Ok(cpu)
    };
    let mut cpus = vec![];
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (id(a)?, id(b)?);
                if a > b {
                    return Err(bad(&format!("{a}-{b} runs backwards")));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(id(part)?),
        }
    }
    if cpus.is_empty() {
        return Err(bad("empty"));
    }
    let mut seen = [false; MAX_CPUS];
    for &c in &cpus {
        if std::mem::replace(&mut seen[c], true) {
            return Err(bad(&format!("CPU {c} is listed twice")));
        }
    }
    Ok(cpus)
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= MAX_CPUS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is not below {MAX_CPUS}"),
        ));
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET checks nothing, so `cpu` was
    // checked against the set's capacity above. sched_setaffinity reads the set it is given.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// CPU ids in this process's affinity mask (honours taskset and cgroup cpusets).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set. sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it, and CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        let cpus: Vec<usize> = (0..MAX_CPUS)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect();
        if cpus.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty CPU affinity mask",
            ));
        }
        Ok(cpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_keep_the_written_order() {
        assert_eq!(parse_cpu_list("1").unwrap(), [1]);
        assert_eq!(parse_cpu_list("0,2").unwrap(), [0, 2]);
        assert_eq!(parse_cpu_list("1-3").unwrap(), [1, 2, 3]);
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), [0, 1, 2, 5]);
        assert_eq!(parse_cpu_list("3,1").unwrap(), [3, 1], "core 0 on CPU 3");
        assert_eq!(parse_cpu_list(" 4 , 6-7 ,").unwrap(), [4, 6, 7]);
        assert_eq!(parse_cpu_list("2-2").unwrap(), [2]);
        assert_eq!(parse_cpu_list("1023").unwrap(), [1023]);
    }

    #[test]
    fn bad_lists_are_refused() {
        for (list, why) in [
            ("", "empty"),
            (" , ", "empty"),
            ("x", "not a number"),
            ("-1", "not a number"),
            ("1-", "not a number"),
            ("1-2-3", "not a number"),
            ("3-1", "backwards"),
            ("0,0", "twice"),
            ("0-2,1", "twice"),
            ("1024", "not below 1024"),
            ("0-18446744073709551615", "not below"),
        ] {
            let e = parse_cpu_list(list).unwrap_err();
            assert!(e.contains(why), "{list:?}: {e}");
        }
    }

    #[test]
    fn pins_to_an_allowed_cpu() {
        let allowed = allowed_cpus().unwrap();
        let cpu = allowed[0];
        std::thread::spawn(move || pin_current_thread(cpu))
            .join()
            .unwrap()
            .unwrap();
        assert!(pin_current_thread(MAX_CPUS).is_err());
    }
}
