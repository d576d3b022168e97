//! The bus in memory: Redis played by the test, byte for byte.

use super::*;

const ME: Origin = Origin { node: 0xa, lane: 0 };
const OTHER: Origin = Origin { node: 0xb, lane: 1 };

fn config() -> BusConfig {
    BusConfig {
        addr: "test:6379".into(),
        prefix: "t".into(),
        db: 0,
        user: None,
        password: None,
        queue_cap: 16 << 10,
        lease: Duration::from_secs(15),
    }
}

/// The commands connection `role` hands its socket at `now`, as strings.
fn sent(bus: &mut Bus, role: Role, now: u64) -> Vec<Vec<String>> {
    let mut bytes = Vec::new();
    bus.take_output(role, now, 0, |b| bytes.extend_from_slice(b));
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (v, n) = resp::decode(&bytes[at..]).unwrap().expect("whole commands");
        out.push(
            v.items()
                .iter()
                .map(|a| String::from_utf8_lossy(a.bytes().unwrap()).into_owned())
                .collect(),
        );
        at += n;
    }
    out
}

/// Redis answers `replies` on `role` at `now`; the lines delivered.
fn answer(bus: &mut Bus, role: Role, now: u64, replies: &[Value<'_>]) -> Vec<(String, String)> {
    let mut bytes = Vec::new();
    for r in replies {
        r.encode(&mut bytes);
    }
    let mut got = Vec::new();
    let used = bus
        .input(role, &bytes, now, &mut |room, line| {
            got.push((room.to_string(), String::from_utf8_lossy(line).into_owned()))
        })
        .expect("replies taken");
    assert_eq!(used, bytes.len());
    got
}

fn ok() -> Value<'static> {
    Value::Simple(b"OK")
}

fn push<'a>(parts: &[&'a [u8]]) -> Value<'a> {
    Value::Array(Some(parts.iter().map(|p| Value::Bulk(Some(p))).collect()))
}

fn subscribed(channel: &[u8]) -> Value<'_> {
    Value::Array(Some(vec![
        Value::Bulk(Some(b"subscribe")),
        Value::Bulk(Some(channel)),
        Value::Int(1),
    ]))
}

/// A line from `origin` in `room`, number `seq` of stream `stream`.
fn envelope(origin: Origin, stream: u32, seq: u64, line: &str) -> Vec<u8> {
    format!("1 {origin} {stream} {seq}\n{line}").into_bytes()
}

/// A bus with both connections greeted and answering, at time 0.
fn up() -> Bus {
    let mut bus = Bus::new(config(), ME);
    bus.tick(0);
    assert_eq!(
        bus.events(),
        vec![Event::Connect(Role::Sub), Event::Connect(Role::Cmd)]
    );
    bus.connected(Role::Sub, 0);
    bus.connected(Role::Cmd, 0);
    assert_eq!(bus.events(), vec![Event::Roster]);
    let sub = sent(&mut bus, Role::Sub, 0);
    assert_eq!(sub[0], ["CLIENT", "SETNAME", "t-000000000000000a.0-sub"]);
    assert_eq!(sub[1], ["SUBSCRIBE", "t:probe:000000000000000a.0"]);
    let cmd = sent(&mut bus, Role::Cmd, 0);
    assert_eq!(cmd[0][..2], ["CLIENT", "SETNAME"]);
    assert_eq!(cmd[1][0], "EVAL", "the wipe");
    assert_eq!(bus.state(), BusState::Connecting);
    answer(
        &mut bus,
        Role::Sub,
        1,
        &[ok(), subscribed(b"t:probe:000000000000000a.0")],
    );
    answer(&mut bus, Role::Cmd, 1, &[ok(), Value::Int(1)]);
    assert_eq!(bus.state(), BusState::Up);
    bus
}

#[test]
fn both_connections_greet_then_the_bus_is_up() {
    let bus = up();
    assert_eq!(bus.stats().reconnects, 0);
}

#[test]
fn a_line_goes_out_in_an_envelope_first_to_publish() {
    let mut bus = up();
    bus.subscribe("lobby");
    assert_eq!(
        sent(&mut bus, Role::Sub, 2),
        [["SUBSCRIBE", "t:room:lobby"]]
    );
    bus.publish("lobby", b"[lobby] ann: hi\n");
    bus.publish("lobby", b"[lobby] ann: again\n");
    let cmd = sent(&mut bus, Role::Cmd, 2);
    let publishes: Vec<_> = cmd.iter().filter(|c| c[0] == "PUBLISH").collect();
    assert_eq!(publishes.len(), 2);
    let stream = bus.rooms[bus.by_name["lobby"]].stream;
    assert_eq!(publishes[0][1], "t:room:lobby");
    assert_eq!(
        publishes[0][2],
        format!("1 000000000000000a.0 {stream} 1\n[lobby] ann: hi\n")
    );
    assert!(publishes[1][2].starts_with(&format!("1 000000000000000a.0 {stream} 2\n")));
    // No room here: nothing to publish for.
    bus.publish("attic", b"[attic] ann: hi\n");
    assert!(
        sent(&mut bus, Role::Cmd, 2)
            .iter()
            .all(|c| c[0] != "PUBLISH")
    );
}

#[test]
fn lines_from_elsewhere_are_delivered_once_in_order_and_gaps_counted() {
    let mut bus = up();
    bus.subscribe("lobby");
    let msg = |seq| envelope(OTHER, 7, seq, &format!("[lobby] bob: {seq}\n"));
    let (m1, m2, m4, m5) = (msg(1), msg(2), msg(4), msg(5));
    let ch = b"t:room:lobby";
    let got = answer(
        &mut bus,
        Role::Sub,
        3,
        &[
            subscribed(ch),
            push(&[b"message", ch, &m1]),
            push(&[b"message", ch, &m2]),
            push(&[b"message", ch, &m4]),
            push(&[b"message", ch, &m4]), // a repeat
            push(&[b"message", ch, &m5]),
        ],
    );
    let lines: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        lines,
        [
            "[lobby] bob: 1\n",
            "[lobby] bob: 2\n",
            "[lobby] bob: 4\n",
            "[lobby] bob: 5\n"
        ]
    );
    assert_eq!(bus.stats().received, 4);
    assert_eq!(bus.stats().lost, 1, "line 3 never came");
    // Our own process's lines (another loop of it) are not delivered again.
    let mine = envelope(Origin { node: 0xa, lane: 3 }, 1, 1, "[lobby] me: x\n");
    assert!(answer(&mut bus, Role::Sub, 3, &[push(&[b"message", ch, &mine])]).is_empty());
    // The origin's room opened anew: numbers start again, the first of
    // the new stream seen as line 2 (line 1 lost).
    let again = envelope(OTHER, 9, 2, "[lobby] bob: new\n");
    assert_eq!(
        answer(&mut bus, Role::Sub, 3, &[push(&[b"message", ch, &again])]).len(),
        1
    );
    assert_eq!(bus.stats().lost, 2);
    // A late line of the old stream is dropped.
    let late = envelope(OTHER, 7, 6, "[lobby] bob: late\n");
    assert!(answer(&mut bus, Role::Sub, 3, &[push(&[b"message", ch, &late])]).is_empty());
}

#[test]
fn lines_said_while_down_wait_in_a_capped_backlog_sent_after_the_greeting() {
    let mut bus = Bus::new(config(), ME);
    bus.subscribe("lobby");
    let line = [b'x'; 1000];
    let mut said = 0;
    while bus.stats().dropped == 0 {
        bus.publish("lobby", &line);
        said += 1;
        assert!(said < 100, "the cap never bit");
    }
    let kept = said - 1;
    assert!(bus.stats().queued as usize <= config().queue_cap);
    assert!(
        kept >= 14,
        "16 KiB holds 14 lines of 1000 bytes, kept {kept}"
    );
    bus.tick(0);
    bus.events();
    bus.connected(Role::Cmd, 0);
    let first = sent(&mut bus, Role::Cmd, 0);
    assert!(
        first.iter().all(|c| c[0] != "PUBLISH"),
        "lines wait for the greeting's answers"
    );
    answer(
        &mut bus,
        Role::Cmd,
        1,
        &[ok(), Value::Int(1), Value::Int(1), Value::Int(1)],
    );
    let after = sent(&mut bus, Role::Cmd, 1);
    let publishes = after.iter().filter(|c| c[0] == "PUBLISH").count();
    assert_eq!(publishes, kept);
}

#[test]
fn retries_back_off_from_100_ms_doubling_to_4_s_with_jitter() {
    let mut bus = Bus::new(config(), ME);
    let mut now = 0;
    let mut delays = Vec::new();
    for _ in 0..10 {
        bus.tick(now);
        assert!(bus.events().contains(&Event::Connect(Role::Cmd)));
        bus.closed(Role::Cmd, now); // refused
        let Stage::Down { retry_at } = bus.sides[Role::Cmd.at()].stage else {
            panic!("not down");
        };
        delays.push(retry_at - now);
        now = retry_at;
    }
    for (i, &d) in delays.iter().enumerate() {
        let full = (RETRY_FIRST_MS << i.min(6)).min(RETRY_MAX_MS);
        assert!(d >= full / 2 && d <= full, "attempt {i}: {d} ms of {full}");
    }
    assert!(delays[9] >= 2000, "the cap is reached: {delays:?}");
    // Once ready, the next failure starts from 100 ms again.
    let mut bus = up();
    bus.closed(Role::Cmd, 10);
    let Stage::Down { retry_at } = bus.sides[Role::Cmd.at()].stage else {
        panic!("not down");
    };
    assert!(retry_at - 10 <= RETRY_FIRST_MS);
}

#[test]
fn a_ping_unanswered_for_3_s_drops_the_subscriber() {
    let mut bus = up(); // ready at 1 ms
    let t = 1 + PING_MS;
    bus.tick(t);
    bus.events();
    assert!(sent(&mut bus, Role::Sub, t).contains(&vec!["PING".to_string()]));
    let pong = Value::Array(Some(vec![
        Value::Bulk(Some(b"pong")),
        Value::Bulk(Some(b"")),
    ]));
    answer(&mut bus, Role::Sub, t + 1, &[pong]);
    assert_eq!(bus.state(), BusState::Up);
    bus.tick(t + PING_MS);
    assert!(sent(&mut bus, Role::Sub, t + PING_MS).contains(&vec!["PING".to_string()]));
    bus.tick(t + 2 * PING_MS - 1);
    assert!(!bus.events().contains(&Event::Drop(Role::Sub)));
    // Found late: one more look first (the answer may wait unread).
    bus.tick(t + 2 * PING_MS);
    assert!(!bus.events().contains(&Event::Drop(Role::Sub)));
    bus.tick(t + 2 * PING_MS + 100);
    assert!(bus.events().contains(&Event::Drop(Role::Sub)));
    assert_eq!(bus.state(), BusState::Down);
}

#[test]
fn an_answer_read_late_on_a_busy_loop_keeps_the_connection() {
    let mut bus = up(); // ready at 1 ms
    let t = 1 + PING_MS;
    bus.tick(t);
    assert!(sent(&mut bus, Role::Sub, t).contains(&vec!["PING".to_string()]));
    // The loop comes back 4 s later: its clock says the ping is late,
    // but the answer is in the socket, read after this tick.
    bus.tick(t + PING_MS + 1000);
    assert!(!bus.events().contains(&Event::Drop(Role::Sub)));
    let pong = Value::Array(Some(vec![
        Value::Bulk(Some(b"pong")),
        Value::Bulk(Some(b"")),
    ]));
    answer(&mut bus, Role::Sub, t + PING_MS + 1001, &[pong]);
    bus.tick(t + PING_MS + 1100);
    assert!(!bus.events().contains(&Event::Drop(Role::Sub)));
    assert_eq!(bus.state(), BusState::Up);
    // The same for a command's reply.
    let mut bus = up();
    bus.subscribe("lobby");
    let cmd = sent(&mut bus, Role::Cmd, 100);
    bus.tick(100 + REPLY_MS + 2000);
    assert!(!bus.events().contains(&Event::Drop(Role::Cmd)));
    let replies: Vec<Value<'_>> = cmd.iter().map(|_| Value::Int(1)).collect();
    answer(&mut bus, Role::Cmd, 100 + REPLY_MS + 2001, &replies);
    bus.tick(100 + REPLY_MS + 2100);
    assert!(!bus.events().contains(&Event::Drop(Role::Cmd)));
    assert_eq!(bus.state(), BusState::Up);
}

#[test]
fn a_ping_answered_as_by_an_unsubscribed_connection_drops_it() {
    let mut bus = up();
    bus.tick(1 + PING_MS);
    assert!(sent(&mut bus, Role::Sub, 1 + PING_MS).contains(&vec!["PING".to_string()]));
    let mut bytes = Vec::new();
    Value::Simple(b"PONG").encode(&mut bytes);
    assert!(
        bus.input(Role::Sub, &bytes, PING_MS + 1, &mut |_, _| {})
            .is_err()
    );
    assert_eq!(bus.state(), BusState::Down);
}

#[test]
fn a_probe_that_reaches_no_subscriber_drops_the_subscriber_at_once() {
    let mut bus = up();
    bus.tick(10);
    let cmd = sent(&mut bus, Role::Cmd, 10);
    assert!(
        cmd.iter()
            .any(|c| c[..2] == ["PUBLISH", "t:probe:000000000000000a.0"])
    );
    let replies: Vec<Value<'_>> = cmd
        .iter()
        .map(|c| {
            if c[0] == "PUBLISH" {
                Value::Int(0)
            } else {
                ok()
            }
        })
        .collect();
    answer(&mut bus, Role::Cmd, 11, &replies);
    assert!(bus.events().contains(&Event::Drop(Role::Sub)));
}

#[test]
fn a_probe_that_does_not_come_back_in_6_s_drops_the_subscriber() {
    let mut bus = up();
    bus.tick(10);
    let cmd = sent(&mut bus, Role::Cmd, 10);
    let replies: Vec<Value<'_>> = cmd
        .iter()
        .map(|c| {
            if c[0] == "PUBLISH" {
                Value::Int(1)
            } else {
                ok()
            }
        })
        .collect();
    answer(&mut bus, Role::Cmd, 11, &replies);
    // The probe comes back once: fine.
    let probe = b"t:probe:000000000000000a.0";
    answer(&mut bus, Role::Sub, 12, &[push(&[b"message", probe, b"1"])]);
    assert!(bus.probe_out.is_none());
    // The next ones never do.
    let mut now = 10;
    while bus.state() == BusState::Up {
        now += 100;
        bus.tick(now);
        for c in sent(&mut bus, Role::Cmd, now) {
            let r = if c[0] == "PUBLISH" {
                Value::Int(1)
            } else {
                ok()
            };
            answer(&mut bus, Role::Cmd, now, &[r]);
        }
        let pong = Value::Array(Some(vec![
            Value::Bulk(Some(b"pong")),
            Value::Bulk(Some(b"")),
        ]));
        if sent(&mut bus, Role::Sub, now)
            .iter()
            .any(|c| c[0] == "PING")
        {
            answer(&mut bus, Role::Sub, now, &[pong]);
        }
        assert!(now < 20_000, "never detected");
    }
    assert!(bus.events().contains(&Event::Drop(Role::Sub)));
    assert!(
        now <= PROBE_MS + PROBE_BACK_MS + 200,
        "detected at {now} ms"
    );
}

#[test]
fn a_command_unanswered_for_5_s_drops_the_command_connection() {
    let mut bus = up();
    bus.subscribe("lobby");
    bus.publish("lobby", b"x\n");
    sent(&mut bus, Role::Cmd, 100);
    bus.tick(100 + REPLY_MS - 1);
    assert!(!bus.events().contains(&Event::Drop(Role::Cmd)));
    bus.tick(100 + REPLY_MS);
    let events = bus.events();
    assert!(!events.contains(&Event::Drop(Role::Cmd)), "one more look");
    assert!(events.contains(&Event::Look(Role::Cmd)), "read it first");
    bus.tick(100 + REPLY_MS + 100);
    assert!(bus.events().contains(&Event::Drop(Role::Cmd)));
    assert_eq!(bus.state(), BusState::Down);
}

#[test]
fn rooms_that_span_servers_are_told_once_when_cut_off_and_once_when_whole() {
    let mut bus = up();
    bus.subscribe("lobby");
    bus.subscribe("solo");
    let (lobby, solo) = (b"t:room:lobby", b"t:room:solo");
    let m = envelope(OTHER, 1, 1, "[lobby] bob: hi\n");
    answer(
        &mut bus,
        Role::Sub,
        5,
        &[
            subscribed(lobby),
            subscribed(solo),
            push(&[b"message", lobby, &m]),
        ],
    );
    bus.events();
    bus.closed(Role::Sub, 10);
    let cut: Vec<Event> = bus.events();
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert!(matches!(&cut[0], Event::Notice { room, line }
        if &**room == "lobby" && line.starts_with("* netsplit: lobby is cut off")));
    // The other connection failing too says nothing more.
    bus.closed(Role::Cmd, 11);
    assert!(bus.events().is_empty());
    // Back: the notice waits for the room's subscription.
    bus.tick(10_000);
    bus.events();
    bus.connected(Role::Sub, 10_000);
    bus.connected(Role::Cmd, 10_000);
    bus.events();
    let sub = sent(&mut bus, Role::Sub, 10_000);
    assert!(
        sub.iter()
            .any(|c| c[0] == "SUBSCRIBE" && c.contains(&"t:room:lobby".to_string()))
    );
    sent(&mut bus, Role::Cmd, 10_000);
    answer(
        &mut bus,
        Role::Sub,
        10_001,
        &[ok(), subscribed(b"t:probe:000000000000000a.0")],
    );
    let mut cmd_replies = vec![ok(), Value::Int(1)];
    cmd_replies.extend((0..4).map(|_| Value::Int(1)));
    answer(&mut bus, Role::Cmd, 10_001, &cmd_replies);
    assert!(
        bus.events().is_empty(),
        "not whole until lobby is subscribed"
    );
    answer(
        &mut bus,
        Role::Sub,
        10_002,
        &[subscribed(lobby), subscribed(solo)],
    );
    let whole = bus.events();
    assert_eq!(whole.len(), 1, "{whole:?}");
    assert!(matches!(&whole[0], Event::Notice { room, line }
        if &**room == "lobby" && line.starts_with("* netjoin: lobby")));
    assert_eq!(bus.stats().reconnects, 2);
}

#[test]
fn answers_reach_the_member_who_asked_and_no_one_else() {
    let mut bus = up();
    assert_eq!(bus.ask(4, Ask::Who("lobby")), Asked::Sent);
    assert_eq!(bus.ask(5, Ask::Nick("ann")), Asked::Sent);
    assert_eq!(bus.ask(6, Ask::Rooms), Asked::Sent);
    let cmd = sent(&mut bus, Role::Cmd, 2);
    assert_eq!(cmd.len(), 3);
    bus.gone(5); // left before its answer came
    let names = Value::Array(Some(vec![
        Value::Bulk(Some(b"ann")),
        Value::Bulk(Some(b"bob")),
    ]));
    answer(
        &mut bus,
        Role::Cmd,
        3,
        &[
            Value::Array(Some(vec![Value::Int(2), names])),
            Value::Int(1),
            Value::Array(Some(vec![
                Value::Int(2),
                Value::Bulk(Some(b"lobby")),
                Value::Int(3),
                Value::Bulk(Some(b"x")),
                Value::Int(1),
            ])),
        ],
    );
    assert_eq!(
        bus.events(),
        vec![
            Event::Who {
                member: 4,
                room: "lobby".into(),
                names: vec!["ann".into(), "bob".into()],
                total: 2
            },
            Event::Rooms {
                member: 6,
                rooms: vec![("lobby".into(), 3), ("x".into(), 1)],
                total: 2
            },
        ]
    );
    // A question lost with its connection gets a word of regret.
    bus.ask(4, Ask::Who("lobby"));
    sent(&mut bus, Role::Cmd, 4);
    bus.closed(Role::Cmd, 5);
    assert!(bus.events().contains(&Event::NoAnswer { member: 4 }));
    assert_eq!(bus.ask(4, Ask::Rooms), Asked::Unreachable);
}

#[test]
fn what_is_not_resp2_fails_the_connection() {
    let mut bus = up();
    assert!(bus.input(Role::Cmd, b"%2\r\n", 5, &mut |_, _| {}).is_err());
    assert_eq!(bus.state(), BusState::Down);
    // A reply nothing asked for is as bad.
    let mut bus = up();
    assert!(bus.input(Role::Cmd, b"+OK\r\n", 5, &mut |_, _| {}).is_err());
}

#[test]
fn a_refused_password_keeps_the_bus_down_and_retrying() {
    let mut bus = Bus::new(
        BusConfig {
            password: Some("secret".into()),
            db: 2,
            ..config()
        },
        ME,
    );
    bus.tick(0);
    bus.events();
    bus.connected(Role::Cmd, 0);
    let cmd = sent(&mut bus, Role::Cmd, 0);
    assert_eq!(cmd[0], ["AUTH", "secret"]);
    assert_eq!(cmd[2], ["SELECT", "2"]);
    let mut bytes = Vec::new();
    Value::Error(b"WRONGPASS invalid username-password pair").encode(&mut bytes);
    assert!(bus.input(Role::Cmd, &bytes, 1, &mut |_, _| {}).is_err());
    assert!(matches!(
        bus.sides[Role::Cmd.at()].stage,
        Stage::Down { .. }
    ));
    bus.tick(1000);
    assert!(bus.events().contains(&Event::Connect(Role::Cmd)));
}

#[test]
fn presence_follows_members_and_is_written_afresh_after_a_greeting() {
    let mut bus = up();
    bus.subscribe("lobby");
    bus.present("lobby", "ann", true);
    bus.present("lobby", "guest1", true);
    let cmd = sent(&mut bus, Role::Cmd, 1);
    let who = "t:who:lobby:000000000000000a.0".to_string();
    assert!(cmd.contains(&vec!["SADD".into(), "t:where:lobby".into(), ME.to_string()]));
    assert!(cmd.contains(&vec![
        "SADD".into(),
        who.clone(),
        "ann".into(),
        "guest1".into()
    ]));
    bus.renamed("lobby", "guest1", "bob");
    bus.absent("lobby", "ann");
    let cmd = sent(&mut bus, Role::Cmd, 2);
    assert!(cmd.contains(&vec!["SADD".into(), who.clone(), "bob".into()]));
    assert!(cmd.contains(&vec!["SREM".into(), who, "ann".into(), "guest1".into()]));
    assert_eq!(bus.rooms[bus.by_name["lobby"]].members, 1);
    // Reconnected: the wipe, then each room's count from what is here.
    bus.closed(Role::Cmd, 3);
    bus.tick(10_000);
    bus.events();
    bus.connected(Role::Cmd, 10_000);
    assert!(bus.events().contains(&Event::Roster));
    let cmd = sent(&mut bus, Role::Cmd, 10_000);
    let wipe = cmd.iter().position(|c| c[0] == "EVAL").unwrap();
    let count = cmd
        .iter()
        .position(|c| c[0] == "HSET" && c[2] == "lobby" && c[3] == "1")
        .expect("the count set afresh");
    assert!(wipe < count);
}

#[test]
fn a_turn_of_arrivals_and_departures_is_one_command_per_key() {
    let mut bus = up();
    bus.subscribe("lobby");
    sent(&mut bus, Role::Cmd, 1);
    for i in 0..300 {
        bus.present("lobby", &format!("m{i}"), true);
    }
    let cmd = sent(&mut bus, Role::Cmd, 2);
    let who = "t:who:lobby:000000000000000a.0";
    assert_eq!(
        cmd.len(),
        2,
        "one SADD and one HINCRBY for 300 members: {cmd:?}"
    );
    assert_eq!(cmd[0][..2], ["SADD", who]);
    assert_eq!(cmd[0].len(), 2 + 300);
    assert_eq!(
        cmd[1],
        ["HINCRBY", "t:rooms:000000000000000a.0", "lobby", "300"]
    );
    // A member that leaves and comes back within the turn: the last word.
    for i in 0..300 {
        bus.absent("lobby", &format!("m{i}"));
    }
    bus.present("lobby", "m7", true);
    let cmd = sent(&mut bus, Role::Cmd, 3);
    assert_eq!(cmd.len(), 3, "{cmd:?}");
    assert_eq!(cmd[0], ["SADD", who, "m7"]);
    assert_eq!(cmd[1][..2], ["SREM", who]);
    assert_eq!(cmd[1].len(), 2 + 299);
    assert!(!cmd[1].contains(&"m7".to_string()));
    assert_eq!(
        cmd[2],
        ["HINCRBY", "t:rooms:000000000000000a.0", "lobby", "-299"]
    );
    assert_eq!(bus.rooms[bus.by_name["lobby"]].members, 1);
}

#[test]
fn what_reads_or_replaces_presence_comes_after_the_batch_or_drops_it() {
    let mut bus = up();
    bus.subscribe("lobby");
    sent(&mut bus, Role::Cmd, 1);
    // Joined and asked in one turn: the asker's SADD goes first.
    bus.present("lobby", "ann", true);
    assert!(matches!(bus.ask(7, Ask::Who("lobby")), Asked::Sent));
    let cmd = sent(&mut bus, Role::Cmd, 2);
    let add = cmd.iter().position(|c| c[0] == "SADD").expect("the join");
    let who = cmd.iter().position(|c| c[0] == "EVAL").expect("the /who");
    assert!(add < who, "{cmd:?}");
    // The room emptied: the batch first, then its keys deleted.
    bus.absent("lobby", "ann");
    bus.unsubscribe("lobby");
    let cmd = sent(&mut bus, Role::Cmd, 3);
    let rem = cmd.iter().position(|c| c[0] == "SREM" && c[2] == "ann");
    let del = cmd.iter().position(|c| c[0] == "DEL");
    assert!(rem.is_some() && rem < del, "{cmd:?}");
    // Shutting down: the wipe is the last word; the batch is dropped.
    bus.subscribe("hall");
    bus.present("hall", "bob", true);
    bus.goodbye();
    let cmd = sent(&mut bus, Role::Cmd, 4);
    let wipe = cmd.iter().rposition(|c| c[0] == "EVAL").expect("the wipe");
    assert_eq!(wipe, cmd.len() - 1, "nothing after the wipe: {cmd:?}");
    assert!(
        !cmd.iter().any(|c| c.contains(&"bob".to_string())),
        "{cmd:?}"
    );
}

#[test]
fn a_subscriber_behind_but_hearing_is_alive_and_one_hearing_nothing_is_not() {
    let mut bus = up(); // ready at 1 ms
    bus.subscribe("lobby");
    let ch = b"t:room:lobby";
    answer(&mut bus, Role::Sub, 2, &[subscribed(ch)]);
    let t = 1 + PING_MS;
    bus.tick(t);
    assert!(sent(&mut bus, Role::Sub, t).contains(&vec!["PING".to_string()]));
    // Redis answers the ping after the burst queued before it: for 10 s
    // the subscriber hears only lines, a few every 100 ms.
    let mut seq = 0;
    let mut now = t;
    while now < t + 10_000 {
        now += 100;
        seq += 1;
        let m = envelope(OTHER, 7, seq, "[lobby] bob: hi\n");
        answer(&mut bus, Role::Sub, now, &[push(&[b"message", ch, &m])]);
        bus.tick(now);
        assert!(
            !bus.events().contains(&Event::Drop(Role::Sub)),
            "dropped at {now} ms"
        );
    }
    assert_eq!(bus.state(), BusState::Up);
    // Then nothing at all: the ping's 3 s run from the last line heard.
    let last = now;
    while !bus.events().contains(&Event::Drop(Role::Sub)) {
        now += 100;
        bus.tick(now);
        assert!(now < last + 10_000, "never dropped");
    }
    assert!(
        now >= last + PING_MS,
        "dropped {} ms after the last line",
        now - last
    );
    assert!(
        now <= last + PING_MS + 200,
        "dropped {} ms after the last line",
        now - last
    );
}
