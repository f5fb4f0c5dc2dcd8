//! CPU use of another process (`/proc/PID/stat`) and of each CPU (`/proc/stat`).

use std::net::SocketAddr;
use std::time::Duration;

fn ticks_per_second() -> f64 {
    // SAFETY: plain libc call.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process (all its threads) from the text of `/proc/PID/stat`.
pub fn parse_pid_stat(text: &str) -> Option<Duration> {
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After ')' come field 3 (state) ...; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks_per_second(),
    ))
}

/// CPU time used so far by process `pid`.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    parse_pid_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Bytes queued for reading on the UDP sockets bound to `addr` (all SO_REUSEPORT sockets of
/// the port, and wildcard binds), from `/proc/net/udp{,6}`: how far the target lags behind.
pub fn udp_rx_queue(addr: SocketAddr) -> Option<u64> {
    let file = if addr.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    Some(parse_udp_rx_queue(
        &std::fs::read_to_string(file).ok()?,
        addr.port(),
    ))
}

/// Sums `rx_queue` over the lines of a `/proc/net/udp` table whose local port is `port`.
pub fn parse_udp_rx_queue(text: &str, port: u16) -> u64 {
    let mut total = 0;
    for line in text.lines().skip(1) {
        let mut f = line.split_ascii_whitespace();
        let (Some(local), Some(queues)) = (f.nth(1), f.nth(2)) else {
            continue;
        };
        let local_port = local
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        let rx = queues
            .split(':')
            .nth(1)
            .and_then(|q| u64::from_str_radix(q, 16).ok());
        if let (Some(lp), Some(rx)) = (local_port, rx) {
            if lp == port {
                total += rx;
            }
        }
    }
    total
}

/// Datagrams the kernel dropped so far on the UDP sockets bound to `addr`'s port (receive
/// buffer full, mostly), from the `drops` column of `/proc/net/udp{,6}`.
pub fn udp_drops(addr: SocketAddr) -> Option<u64> {
    let file = if addr.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    Some(parse_udp_drops(
        &std::fs::read_to_string(file).ok()?,
        addr.port(),
    ))
}

/// Sums the last column (`drops`) over the lines of a `/proc/net/udp` table whose local port is
/// `port`.
pub fn parse_udp_drops(text: &str, port: u16) -> u64 {
    let mut total = 0;
    for line in text.lines().skip(1) {
        let mut f = line.split_ascii_whitespace();
        let local_port = f
            .nth(1)
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        let drops = f.last().and_then(|d| d.parse::<u64>().ok());
        if let (Some(lp), Some(d)) = (local_port, drops) {
            if lp == port {
                total += d;
            }
        }
    }
    total
}

/// (busy, total) jiffies of each CPU, indexed by CPU number.
#[derive(Clone, Debug, Default)]
pub struct CpuTimes(pub Vec<(u64, u64)>);

impl CpuTimes {
    pub fn parse(text: &str) -> CpuTimes {
        let mut out = Vec::new();
        for line in text.lines() {
            // Per-CPU lines only ("cpu0 ..."), not the "cpu  ..." total.
            let Some(rest) = line
                .strip_prefix("cpu")
                .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            else {
                continue;
            };
            let mut f = rest.split_ascii_whitespace();
            let Some(Ok(cpu)) = f.next().map(str::parse::<usize>) else {
                continue;
            };
            // user nice system idle iowait irq softirq steal
            let v: Vec<u64> = f.take(8).filter_map(|x| x.parse().ok()).collect();
            if v.len() < 8 {
                continue;
            }
            let total: u64 = v.iter().sum();
            let idle = v[3] + v[4];
            if out.len() <= cpu {
                out.resize(cpu + 1, (0, 0));
            }
            out[cpu] = (total - idle, total);
        }
        CpuTimes(out)
    }

    pub fn now() -> CpuTimes {
        CpuTimes::parse(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
    }

    /// Busy percentage of each CPU between `self` (earlier) and `later`.
    pub fn busy_since(&self, later: &CpuTimes) -> Vec<f64> {
        later
            .0
            .iter()
            .zip(&self.0)
            .map(|(&(b1, t1), &(b0, t0))| {
                let dt = t1.saturating_sub(t0);
                if dt == 0 {
                    0.0
                } else {
                    100.0 * b1.saturating_sub(b0) as f64 / dt as f64
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_stat_with_spaces_in_name() {
        let s =
            "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 12345 0";
        let t = parse_pid_stat(s).unwrap();
        assert_eq!(t, Duration::from_secs_f64(300.0 / ticks_per_second()));
    }

    #[test]
    fn own_process_readable() {
        assert!(process_cpu(std::process::id()).is_some());
    }

    #[test]
    fn udp_queue() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 0100007F:B6A4 00000000:0000 07 00000000:00001F40 00:00000000 00000000     0        0 1 2 0 0
  101: 0100007F:B6A4 00000000:0000 07 00000000:00000060 00:00000000 00000000     0        0 1 2 0 0
  102: 0100007F:0035 00000000:0000 07 00000000:00000100 00:00000000 00000000     0        0 1 2 0 0
";
        assert_eq!(parse_udp_rx_queue(t, 0xB6A4), 0x1F40 + 0x60);
        assert_eq!(parse_udp_rx_queue(t, 1), 0);
        assert_eq!(parse_udp_drops(t, 0xB6A4), 0);
        let d = t.replace("1 2 0 0\n  102", "1 2 0 17\n  102");
        assert_eq!(parse_udp_drops(&d, 0xB6A4), 17);
        assert_eq!(parse_udp_drops(&d, 0x35), 0);
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(udp_rx_queue(s.local_addr().unwrap()), Some(0));
        assert_eq!(udp_drops(s.local_addr().unwrap()), Some(0));
    }

    #[test]
    fn cpu_busy() {
        let a = CpuTimes::parse(
            "cpu  1000 2 3 4 5 6 7 8\ncpu0 10 0 10 80 0 0 0 0 0 0\ncpu1 0 0 0 100 0 0 0 0\n",
        );
        let b = CpuTimes::parse("cpu0 60 0 10 130 0 0 0 0\ncpu1 0 0 25 175 0 0 0 0\n");
        assert_eq!(a.busy_since(&b), vec![50.0, 25.0]);
    }
}
