//! `reactor bench game` against the real binary: bots join over UDP (and
//! WebSocket), play, and report; with simulated loss they see fewer
//! snapshots than were sent; `--no-ack` makes every snapshot full; a
//! full arena refuses the extra bots; bad flags are refused. No timing
//! is asserted: only what was counted.

mod util;

use std::time::Duration;

use serde_json::Value;
use util::server::{Server, serial};
use util::{TIMEOUT, TempDir, run_bin, wait_until};

/// Runs `reactor bench game ARGS... --json FILE -q`: the JSON and stdout.
fn bench_game(args: &[&str]) -> (Value, String) {
    let dir = TempDir::new("bench-game");
    let json = dir.path().join("result.json");
    let json_arg = json.to_string_lossy().into_owned();
    let mut full = vec!["bench", "game"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--json", &json_arg, "-q"]);
    let (status, out, err) = run_bin(&full, Duration::from_secs(60));
    assert!(status.success(), "{full:?}: {status}\n{out}\n{err}");
    let text = std::fs::read_to_string(&json).expect("the JSON was written");
    (serde_json::from_str(&text).expect("the JSON parses"), out)
}

fn num(v: &Value, path: &str) -> u64 {
    let mut at = v;
    for k in path.split('.') {
        at = &at[k];
    }
    at.as_u64()
        .or_else(|| at.as_f64().map(|f| f as u64))
        .unwrap_or_else(|| panic!("{path} is not a number: {at}"))
}

fn float(v: &Value, path: &str) -> f64 {
    let mut at = v;
    for k in path.split('.') {
        at = &at[k];
    }
    at.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {at}"))
}

/// The server's players are back to 0: every bot said BYE.
fn all_left(srv: &Server) {
    let mut last = Default::default();
    let ok = wait_until(TIMEOUT, || {
        last = srv.stats();
        last["game_players"] == 0
    });
    assert!(ok, "the bots did not leave: {last:?}");
}

#[test]
fn five_bots_play_on_loopback_and_lose_nothing() {
    let _g = serial();
    let srv = Server::start(&["--game", "127.0.0.1:0"]);
    let (game, http) = (srv.addr("game").to_string(), srv.addr("http").to_string());
    let pid = srv.pid.to_string();
    let (r, out) = bench_game(&[
        &game,
        "--players",
        "5",
        "--duration",
        "2s",
        "--stats",
        &http,
        "--pid",
        &pid,
    ]);
    let g = &r["workload_figures"];
    assert_eq!(r["workload"], "game", "{out}");
    assert_eq!(num(g, "players.udp"), 5, "{out}");
    assert_eq!(num(g, "players.refused") + num(g, "players.never_in"), 0);
    assert_eq!(num(&r, "errors"), 0, "{out}");
    let received = num(g, "snapshots.received");
    assert!(received > 0, "{out}");
    assert_eq!(num(g, "snapshots.lost"), 0, "loopback loses nothing: {out}");
    assert_eq!(num(g, "snapshots.expected_by_tick"), received);
    assert_eq!(num(g, "snapshots.undecodable"), 0);
    // Acknowledged: deltas, and the first one in full.
    assert!(num(g, "snapshots.delta.count") > 0, "{out}");
    assert!(float(g, "snapshots.delta.mean_bytes") > 17.0);
    assert!(num(g, "snapshots.full.max_bytes") >= 17 + 5 * 9);
    assert!(num(g, "jitter_us.count") > 0);
    assert!(num(g, "inputs.acknowledged") > 0 && num(&r, "requests") > 0);
    assert!(float(g, "per_player_bytes_per_sec.down") > 0.0);
    assert!(float(g, "per_player_bytes_per_sec.up") > 0.0);
    assert_eq!(
        num(g, "datagrams.dropped_in") + num(g, "datagrams.dropped_out"),
        0
    );
    // The server's view over the window, from its /stats.
    let s = &g["server"];
    assert!(num(s, "ticks") > 0 && num(s, "tick_intervals") > 0, "{out}");
    assert!(num(s, "snapshots") > 0);
    assert!(out.contains("server tick jitter"), "{out}");
    all_left(&srv);
    srv.stop("bench game");
}

#[test]
fn simulated_loss_shows_as_snapshots_lost() {
    let _g = serial();
    let srv = Server::start(&["--game", "127.0.0.1:0"]);
    let game = srv.addr("game").to_string();
    let (r, out) = bench_game(&[&game, "--players", "5", "-d", "2s", "--loss", "0.3"]);
    let g = &r["workload_figures"];
    assert_eq!(num(g, "players.udp"), 5, "{out}");
    let (received, expected) = (
        num(g, "snapshots.received"),
        num(g, "snapshots.expected_by_tick"),
    );
    assert!(received > 0 && received < expected, "{out}");
    assert_eq!(num(g, "snapshots.lost"), expected - received);
    assert!(num(g, "datagrams.dropped_in") > 0, "{out}");
    assert!(num(g, "datagrams.dropped_out") > 0, "{out}");
    // Inputs are repeated and acknowledged by every later snapshot: the
    // player still sees its inputs applied.
    assert!(num(g, "inputs.acknowledged") > 0, "{out}");
    assert!(out.contains("simulated loss 30.0%"), "{out}");
    all_left(&srv);
    srv.stop("bench game --loss");
}

#[test]
fn websocket_players_no_ack_and_a_full_arena() {
    let _g = serial();
    let srv = Server::start(&["--game", "127.0.0.1:0", "--game-max-players", "4"]);
    let (game, http) = (srv.addr("game").to_string(), srv.addr("http"));
    let ws = format!("ws://{http}/game/ws");
    let (r, out) = bench_game(&[
        &game,
        "--ws",
        &ws,
        "--ws-players",
        "2",
        "--players",
        "5",
        "-d",
        "1s",
        "--no-ack",
    ]);
    let g = &r["workload_figures"];
    // The WebSocket players are usually in first (their upgrade goes
    // before any HELLO), but who is the one refused is a race.
    assert!(num(g, "players.ws") >= 1, "{out}");
    assert_eq!(num(g, "players.ws") + num(g, "players.udp"), 4, "{out}");
    assert_eq!(
        num(g, "players.refused"),
        1,
        "the fifth finds it full: {out}"
    );
    // Never acknowledged: every snapshot is full.
    assert_eq!(num(g, "snapshots.delta.count"), 0, "{out}");
    assert!(num(g, "snapshots.full.count") > 0, "{out}");
    assert_eq!(num(g, "snapshots.lost"), 0, "{out}");
    all_left(&srv);
    srv.stop("bench game --ws --no-ack");
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["bench", "game", "127.0.0.1:9", "--loss", "1.5"],
            "from 0 to 1",
        ),
        (
            &["bench", "game", "127.0.0.1:9", "--players", "0"],
            "players",
        ),
        (&["bench", "game"], "ADDR"),
        (
            &[
                "bench",
                "game",
                "127.0.0.1:9",
                "--ws",
                "http://x/",
                "--ws-players",
                "1",
            ],
            "ws://",
        ),
        (
            &["bench", "game", "127.0.0.1:9", "--ws-players", "1"],
            "--ws",
        ),
    ];
    for (args, why) in cases {
        let (status, out, err) = run_bin(args, Duration::from_secs(10));
        assert!(!status.success(), "{args:?} ran: {out}");
        assert!(err.contains(why), "{args:?}: no {why:?} in {err}");
    }
}
