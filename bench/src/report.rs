//! The figures: per-round table, medians, ratios, scenarios, and one
//! PASS/MISS line per target. Memory is shown in MB (10^6 bytes).

use std::time::Duration;

use crate::scenarios::{IdleConnections, Storm, Transfer};
use crate::wrk::WrkResult;
use crate::{Plan, Route};

#[derive(Debug, Clone)]
pub struct RoundResult {
    pub round: usize,
    pub path: Route,
    pub wrk: WrkResult,
    /// CPU of the forwarding processes (the proxy, or every nginx process).
    pub cpu_us_per_request: Option<f64>,
    /// The system (kernel) part of it.
    pub sys_us_per_request: Option<f64>,
    /// The share of the machine's CPU used by processes outside the
    /// benchmark during the round, in percent.
    pub other_load: Option<f64>,
    /// CPU of the fake wiki, the same work on every path.
    pub wiki_cpu_us_per_request: Option<f64>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub rounds: Vec<RoundResult>,
    pub proxy_rss_start_kib: u64,
    pub proxy_rss_idle_kib: u64,
    pub many: Vec<(Route, WrkResult)>,
    pub idle_many: Option<IdleConnections>,
    pub downloads: Vec<(Route, Transfer)>,
    pub uploads: Vec<(Route, Transfer)>,
    pub storms: Vec<Storm>,
    pub proxy_log_bytes: u64,
    /// What makes the run broken (exit 1), as opposed to a missed target.
    pub problems: Vec<String>,
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

struct Target {
    name: String,
    value: Option<f64>,
    shown: String,
    goal: String,
    met: bool,
}

impl Report {
    fn of(&self, path: Route) -> impl Iterator<Item = &RoundResult> {
        self.rounds.iter().filter(move |r| r.path == path)
    }

    fn find(&self, round: usize, path: Route) -> Option<&RoundResult> {
        self.rounds
            .iter()
            .find(|r| r.round == round && r.path == path)
    }

    fn median_of(&self, path: Route, f: impl Fn(&RoundResult) -> Option<f64>) -> Option<f64> {
        median(self.of(path).filter_map(f).collect())
    }

    /// Per-round ratio proxy/other of `f`.
    fn ratios(&self, other: Route, f: impl Fn(&RoundResult) -> Option<f64>) -> Vec<Option<f64>> {
        let rounds = self
            .rounds
            .iter()
            .map(|r| r.round)
            .max()
            .map_or(0, |m| m + 1);
        (0..rounds)
            .map(|round| {
                let proxy = f(self.find(round, Route::Proxy)?)?;
                let other = f(self.find(round, other)?)?;
                (other > 0.0).then(|| proxy / other)
            })
            .collect()
    }

    /// Things that make the figures meaningless: the harness worked but the
    /// system under test did not answer.
    pub fn check_sanity(&mut self, plan: &Plan) {
        for r in &self.rounds {
            if r.wrk.requests == 0 {
                self.problems.push(format!(
                    "round {} {}: no request completed",
                    r.round + 1,
                    r.path.name()
                ));
            } else if r.wrk.errors() * 100 > r.wrk.requests {
                self.problems.push(format!(
                    "round {} {}: {} errors in {} requests",
                    r.round + 1,
                    r.path.name(),
                    r.wrk.errors(),
                    r.wrk.requests
                ));
            }
        }
        for (path, result) in &self.many {
            if result.requests == 0 {
                self.problems.push(format!(
                    "{} connections {}: no request completed",
                    plan.many_connections,
                    path.name()
                ));
            }
        }
        if self
            .idle_many
            .as_ref()
            .is_none_or(|idle| idle.answered == 0)
        {
            self.problems
                .push("idle connections: no request was answered".into());
        }
    }

    pub fn print(&self, plan: &Plan, elapsed: Duration) {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!();
        println!(
            "== mw-auth-proxy benchmark ({}: {} rounds x {} s, {} connections, {} wrk threads, {}-byte answers, {} cores) ==",
            if plan.quick {
                "QUICK, figures indicative only"
            } else {
                "full"
            },
            plan.rounds,
            plan.round.as_secs(),
            plan.connections,
            plan.wrk_threads,
            plan.body_bytes,
            cores
        );
        println!(
            "paths: direct = wrk -> fake wiki (static cookie); proxy = wrk -> mw-auth-proxy -> fake wiki;"
        );
        println!(
            "       nginx = wrk -> nginx (static Cookie header, upstream keepalive 64) -> fake wiki"
        );
        if plan.reference {
            println!(
                "       lean = wrk -> bench/src/bin/lean_forwarder.rs (the same job on hyper alone, no login or log) -> fake wiki"
            );
        }
        println!(
            "CPU us/req: utime+stime of the forwarder (the proxy; all nginx processes) per request, sys = its kernel part;"
        );
        println!(
            "wiki us/req: the fake wiki's CPU per request; RSS: peak VmRSS of the forwarder during the round."
        );
        println!();
        println!("Steady reads, every round");
        println!(
            "{:>5}  {:<6}  {:>9}  {:>7}  {:>7}  {:>10}  {:>6}  {:>11}  {:>8}  {:>6}  {:>7}",
            "round",
            "path",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU us/req",
            "sys",
            "wiki us/req",
            "RSS MB",
            "errors",
            "other%"
        );
        for r in &self.rounds {
            println!(
                "{:>5}  {:<6}  {:>9.0}  {:>7.2}  {:>7.2}  {:>10}  {:>6}  {:>11}  {:>8.1}  {:>6}  {:>7}",
                r.round + 1,
                r.path.name(),
                r.wrk.rps(),
                ms(r.wrk.p50_us),
                ms(r.wrk.p99_us),
                opt(r.cpu_us_per_request, 1),
                opt(r.sys_us_per_request, 1),
                opt(r.wiki_cpu_us_per_request, 1),
                mb(r.wrk.rss_peak_kib),
                r.wrk.errors(),
                opt(r.other_load, 0)
            );
        }
        let busiest = self
            .rounds
            .iter()
            .filter_map(|r| r.other_load)
            .fold(0.0, f64::max);
        if busiest > 10.0 {
            println!(
                "note: other processes used up to {busiest:.0}% of the machine during a round; the figures are disturbed"
            );
        }
        println!();
        println!("Medians");
        println!(
            "{:>5}  {:<6}  {:>9}  {:>7}  {:>7}  {:>10}  {:>6}  {:>11}  {:>8}",
            "", "path", "req/s", "p50 ms", "p99 ms", "CPU us/req", "sys", "wiki us/req", "RSS MB"
        );
        for path in plan.routes() {
            println!(
                "{:>5}  {:<6}  {:>9}  {:>7}  {:>7}  {:>10}  {:>6}  {:>11}  {:>8}",
                "med",
                path.name(),
                opt(self.median_of(path, |r| Some(r.wrk.rps())), 0),
                opt(self.median_of(path, |r| Some(ms(r.wrk.p50_us))), 2),
                opt(self.median_of(path, |r| Some(ms(r.wrk.p99_us))), 2),
                opt(self.median_of(path, |r| r.cpu_us_per_request), 1),
                opt(self.median_of(path, |r| r.sys_us_per_request), 1),
                opt(self.median_of(path, |r| r.wiki_cpu_us_per_request), 1),
                opt(self.median_of(path, |r| Some(mb(r.wrk.rss_peak_kib))), 1),
            );
        }
        let rps = |r: &RoundResult| Some(r.wrk.rps());
        let cpu = |r: &RoundResult| r.cpu_us_per_request;
        let p99 = |r: &RoundResult| Some(r.wrk.p99_us as f64);
        let p50 = |r: &RoundResult| Some(r.wrk.p50_us as f64);
        let columns = [
            ("req/s proxy/direct", self.ratios(Route::Direct, rps)),
            ("req/s proxy/nginx", self.ratios(Route::Nginx, rps)),
            ("CPU proxy/nginx", self.ratios(Route::Nginx, cpu)),
            ("p50 proxy/nginx", self.ratios(Route::Nginx, p50)),
            ("p99 proxy/nginx", self.ratios(Route::Nginx, p99)),
        ];
        println!();
        println!("Ratios, every round");
        print!("{:>5}", "round");
        for (name, _) in &columns {
            print!("  {name:>18}");
        }
        println!();
        for round in 0..plan.rounds {
            print!("{:>5}", round + 1);
            for (_, values) in &columns {
                print!("  {:>18}", opt(values.get(round).copied().flatten(), 2));
            }
            println!();
        }
        print!("{:>5}", "med");
        let medians: Vec<Option<f64>> = columns
            .iter()
            .map(|(_, values)| median(values.iter().flatten().copied().collect()))
            .collect();
        for value in &medians {
            print!("  {:>18}", opt(*value, 2));
        }
        println!();

        if plan.reference {
            let lean = |other: Route, f: &dyn Fn(&RoundResult) -> Option<f64>| {
                let rounds = plan.rounds;
                median(
                    (0..rounds)
                        .filter_map(|round| {
                            let lean = f(self.find(round, Route::Lean)?)?;
                            let other = f(self.find(round, other)?)?;
                            (other > 0.0).then(|| lean / other)
                        })
                        .collect(),
                )
            };
            println!(
                "  reference, medians of per-round ratios: lean/nginx req/s {}, CPU {}; proxy/lean req/s {}",
                opt(lean(Route::Nginx, &rps), 2),
                opt(lean(Route::Nginx, &cpu), 2),
                opt(
                    median(
                        (0..plan.rounds)
                            .filter_map(|round| {
                                let proxy = self.find(round, Route::Proxy)?.wrk.rps();
                                let lean = self.find(round, Route::Lean)?.wrk.rps();
                                (lean > 0.0).then(|| proxy / lean)
                            })
                            .collect()
                    ),
                    2
                )
            );
        }

        println!();
        println!("Memory of mw-auth-proxy");
        let proxy_load_peak = self
            .of(Route::Proxy)
            .map(|r| r.wrk.rss_peak_kib)
            .max()
            .unwrap_or(0);
        println!(
            "  RSS idle: {:.1} MB after login, {:.1} MB after the rounds; peak under {}-connection load: {:.1} MB",
            mb(self.proxy_rss_start_kib),
            mb(self.proxy_rss_idle_kib),
            plan.connections,
            mb(proxy_load_peak)
        );

        println!();
        println!(
            "{} connections (wrk, {} s)",
            plan.many_connections,
            plan.many_duration.as_secs()
        );
        println!(
            "  {:<6}  {:>9}  {:>7}  {:>7}  {:>8}  {:>6}",
            "path", "req/s", "p50 ms", "p99 ms", "RSS MB", "errors"
        );
        for (path, r) in &self.many {
            println!(
                "  {:<6}  {:>9.0}  {:>7.2}  {:>7.2}  {:>8.1}  {:>6}",
                path.name(),
                r.rps(),
                ms(r.p50_us),
                ms(r.p99_us),
                mb(r.rss_peak_kib),
                r.errors()
            );
        }
        if let Some(idle) = &self.idle_many {
            println!(
                "  {} idle keep-alive connections to the proxy: {} opened, {} answered; RSS {:.1} MB while held, peak {:.1} MB",
                plan.many_connections,
                idle.opened,
                idle.answered,
                mb(idle.rss_held_kib),
                mb(idle.rss_peak_kib)
            );
        }

        println!();
        println!(
            "Big transfers, streamed (RSS: peak of the process on the path's far end: fake wiki for direct, proxy for proxy)"
        );
        for (label, list) in [("response", &self.downloads), ("upload", &self.uploads)] {
            for (path, t) in list {
                println!(
                    "  {:<8}  {:<6}  {:>6} MiB in {:>6.2} s  {:>7.0} MiB/s  RSS {:>5.1} MB before, peak {:>5.1} MB",
                    label,
                    path.name(),
                    t.bytes >> 20,
                    t.seconds,
                    t.mib_per_s(),
                    mb(t.rss_before_kib),
                    mb(t.rss_peak_kib)
                );
            }
        }

        println!();
        println!("Re-login storm (requests in flight through the proxy when the wiki kills the session)");
        println!(
            "  {:>5}  {:>8}  {:>9}  {:>5}  {:>6}  {:>13}  {:>6}  {:>8}  {:>10}  {:>10}  {:>10}",
            "storm",
            "requests",
            "in flight",
            "held",
            "ok",
            "client errors",
            "logins",
            "login ms",
            "lag p50 ms",
            "lag max ms",
            "recover ms"
        );
        for (i, s) in self.storms.iter().enumerate() {
            println!(
                "  {:>5}  {:>8}  {:>9}  {:>5}  {:>6}  {:>13}  {:>6}  {:>8.1}  {:>10.1}  {:>10.1}  {:>10.1}",
                i + 1,
                s.requests,
                s.in_flight,
                s.held,
                s.ok,
                s.client_errors,
                s.logins,
                s.login_after_ms,
                s.lag_p50_ms,
                s.lag_max_ms,
                s.recover_ms
            );
            if let Some(err) = &s.first_error {
                println!("         first client error: {err}");
            }
            if s.early > 0 {
                println!(
                    "         {} requests were answered before the new login",
                    s.early
                );
            }
        }
        println!(
            "  login = the wiki's login answer after the kill; lag = each client's complete answer after the login answer;"
        );
        println!(
            "  in flight = at the proxy; held = of those, at the wiki (the rest waited for a turn); recover = the last answer after the kill"
        );

        println!();
        let targets = self.targets(&medians);
        println!(
            "Targets{}",
            if plan.quick {
                " (quick run: too short to judge; the full run decides)"
            } else {
                ""
            }
        );
        for t in &targets {
            println!(
                "{:<4}  {:<58} {:>10}   target {}",
                if t.met { "PASS" } else { "MISS" },
                t.name,
                if t.value.is_some() {
                    t.shown.clone()
                } else {
                    "-".into()
                },
                t.goal
            );
        }
        let passed = targets.iter().filter(|t| t.met).count();
        println!(
            "targets: {passed} PASS, {} MISS; proxy log {:.1} MB; run took {:.0} s",
            targets.len() - passed,
            self.proxy_log_bytes as f64 / 1e6,
            elapsed.as_secs_f64()
        );
        for problem in &self.problems {
            println!("BROKEN: {problem}");
        }
    }

    fn targets(&self, medians: &[Option<f64>]) -> Vec<Target> {
        let mut targets = Vec::new();
        let mut push = |name: &str, value: Option<f64>, shown: String, goal: &str, met: bool| {
            targets.push(Target {
                name: name.into(),
                value,
                shown,
                goal: goal.into(),
                met: value.is_some() && met,
            });
        };
        let rps = medians.get(1).copied().flatten();
        push(
            "throughput proxy/nginx (median of per-round ratios)",
            rps,
            opt(rps, 2),
            ">= 1.20",
            rps.is_some_and(|v| v >= 1.2),
        );
        let cpu = medians.get(2).copied().flatten();
        push(
            "CPU per request proxy/nginx (median of per-round ratios)",
            cpu,
            opt(cpu, 2),
            "<= 0.75",
            cpu.is_some_and(|v| v <= 0.75),
        );
        let p99 = medians.get(4).copied().flatten();
        push(
            "p99 latency proxy/nginx (median of per-round ratios)",
            p99,
            opt(p99, 2),
            "<= 1.00",
            p99.is_some_and(|v| v <= 1.0),
        );
        let idle = self.proxy_rss_start_kib.max(self.proxy_rss_idle_kib);
        push(
            "proxy RSS idle (after login and after load, larger)",
            (idle > 0).then(|| mb(idle)),
            format!("{:.1} MB", mb(idle)),
            "< 20 MB",
            mb(idle) < 20.0,
        );
        let many = self
            .many
            .iter()
            .filter(|(path, _)| *path == Route::Proxy)
            .map(|(_, r)| r.rss_peak_kib)
            .chain(self.idle_many.iter().map(|i| i.rss_peak_kib))
            .max();
        push(
            "proxy RSS with 1,000 connections (busy and idle, peak)",
            many.map(mb),
            format!("{:.1} MB", many.map_or(0.0, mb)),
            "< 64 MB",
            many.is_some_and(|kib| mb(kib) < 64.0),
        );
        let down = self
            .downloads
            .iter()
            .find(|(p, _)| *p == Route::Proxy)
            .map(|(_, t)| t);
        push(
            &format!(
                "proxy RSS streaming a {} MiB response",
                down.map_or(0, |t| t.expected >> 20)
            ),
            down.map(|t| mb(t.rss_peak_kib)),
            format!("{:.1} MB", down.map_or(0.0, |t| mb(t.rss_peak_kib))),
            "< 64 MB",
            down.is_some_and(|t| mb(t.rss_peak_kib) < 64.0),
        );
        let up = self
            .uploads
            .iter()
            .find(|(p, _)| *p == Route::Proxy)
            .map(|(_, t)| t);
        push(
            &format!(
                "proxy RSS streaming a {} MiB upload",
                up.map_or(0, |t| t.expected >> 20)
            ),
            up.map(|t| mb(t.rss_peak_kib)),
            format!("{:.1} MB", up.map_or(0.0, |t| mb(t.rss_peak_kib))),
            "< 64 MB",
            up.is_some_and(|t| mb(t.rss_peak_kib) < 64.0),
        );
        let storms = !self.storms.is_empty();
        let logins: Vec<u64> = self.storms.iter().map(|s| s.logins).collect();
        push(
            "storm: logins per storm (each storm)",
            storms.then_some(0.0),
            format!("{logins:?}"),
            "exactly 1",
            storms && logins.iter().all(|&n| n == 1),
        );
        let errors: usize = self.storms.iter().map(|s| s.client_errors).sum();
        push(
            "storm: client errors (all storms)",
            storms.then_some(errors as f64),
            errors.to_string(),
            "0",
            storms && errors == 0,
        );
        let lag = self.storms.iter().map(|s| s.lag_max_ms).reduce(f64::max);
        push(
            "storm: slowest answer after the wiki's login answer",
            lag,
            format!("{} ms", opt(lag, 1)),
            "<= 50 ms",
            lag.is_some_and(|l| l <= 50.0) && self.storms.iter().all(|s| s.ok > 0),
        );
        targets
    }
}
