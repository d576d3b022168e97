//! Chat: line chat with rooms, a tiny IRC, as a sans-I/O state machine.
//!
//! # Protocol
//!
//! Every line ends with `\n`; input may also end lines with `\r\n`.
//! Empty lines are ignored. A member starts as `guest<id>` in `lobby`.
//!
//! - `text` goes to the other members of the sender's room as
//!   `[room] nick: text`; `//text` sends `/text`.
//! - `/nick NAME`, `/join ROOM`, `/who`, `/rooms`, `/quit`, `/help`.
//!   Names are 1..=32 of `[A-Za-z0-9_-]`; nicks are unique in the hub and
//!   may not start with `guest` unless they are the member's own default.
//! - Notices start with `* `, errors with `ERROR `. A message or notice
//!   never goes to the member it is about, only the explicit replies do.
//! - A line longer than `max_line` bytes (complete, or pending with no
//!   newline in sight) gets an error and [`Verdict::Close`].
//!
//! # Data layout, and why
//!
//! A chat server mostly holds idle members, so a member is two `u32`s:
//! [`Member`] is its room (an index into the room table) and its slot in
//! that room's member list. The default nick `guest<id>` is derived from
//! the id when needed, never stored; custom nicks live in two maps (id to
//! nick, nick to id) that only members with a nick occupy. Members live in
//! a `Vec` indexed by connection id (ids are slab keys: dense and reused),
//! so a lookup is one bounds check. Per member that is one
//! `Option<Member>` (12 bytes) plus one `usize` in its room's list; the
//! hub keeps no per-member buffers (the reactor owns the I/O).
//!
//! Each room keeps a `Vec` of member ids. The member's slot makes leaving
//! O(1): `swap_remove`, then fix the slot of the member moved into the
//! hole. Rooms sit in a table with a free list, found by name through a
//! `BTreeMap`, which also gives `/rooms` its sorted order for free.
//!
//! Fan-out formats each outgoing line once, into a scratch `Vec` the hub
//! keeps, then hands that one slice to [`Outbox::send`] per recipient: a
//! message costs one format plus one copy per recipient, and no allocation
//! in steady state.
//!
//! # Rooms shared with other servers
//!
//! When the outbox says other servers share the rooms ([`Outbox::shared`]:
//! the Redis bus, `service::bus`), the hub tells it who is where (a room's
//! first member here subscribes, its last unsubscribes; each member is
//! present or absent) and asks before it answers what only all servers
//! together know: `/who` and `/rooms` are answered when the answer comes
//! ([`ChatHub::who_answer`], [`ChatHub::rooms_answer`]), and a nick is
//! reserved here and taken only once no other server holds it
//! ([`ChatHub::nick_answer`]). With the other servers out of reach, `/who`
//! and `/rooms` answer for this server and say so, and `/nick` is refused
//! (nicks in use are kept). Default nicks carry the server's tag
//! (`guest7-3fa9c1`), so they are unique without asking.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fmt::Write as _;
use std::io::Write as _;

use super::answer::{Ask, Asked, Outbox, Verdict};

/// The room every member starts in; it always exists (index 0).
const LOBBY: u32 = 0;
/// The lobby's name.
const LOBBY_NAME: &str = "lobby";
/// Longest nick or room name, in bytes (the charset is ASCII).
const MAX_NAME: usize = 32;
/// Default for the largest room that still gets join, leave and nick
/// notices. Each notice goes to every member, so filling a room of N
/// members with notices costs O(N^2) bytes: 10,000 members joining one
/// room would queue 100 million lines. Large chat systems mute these
/// notices in big rooms for the same reason; `/who` still lists members.
pub const NOTICE_LIMIT: usize = 100;
/// Most names listed by `/who` and `/rooms` before `, and N more`.
const MAX_LISTED: usize = 100;
/// Reply to `/help`.
const HELP: &str = "* commands:\n\
    * /nick NAME   take a nick (1-32 of A-Z a-z 0-9 _ -)\n\
    * /join ROOM   move to ROOM (created if new)\n\
    * /who         list the members of your room\n\
    * /rooms       list the rooms and their sizes\n\
    * /quit        leave the chat\n\
    * //text       send a message that starts with /\n";

/// Why a member left (chooses the notice the room sees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// The member typed `/quit`: `* nick left ROOM`.
    Quit,
    /// The connection closed or failed: `* nick left ROOM`.
    Closed,
    /// It did not read its output fast enough: `* nick left ROOM (too slow)`.
    TooSlow,
    /// It was idle too long: `* nick left ROOM (idle)`.
    TimedOut,
    /// The server is shutting down: no notice (everyone is leaving).
    Shutdown,
}

/// One connected member: all the hub stores for it.
#[derive(Debug)]
struct Member {
    /// Index of its room in `ChatHub::rooms`.
    room: u32,
    /// Its index in that room's `members` (for O(1) removal).
    slot: u32,
}

/// One room.
#[derive(Debug)]
struct Room {
    /// Its name, as shown in `[room]` prefixes and notices.
    name: Box<str>,
    /// Ids of its members, in no particular order (removal swaps).
    members: Vec<usize>,
}

/// The chat state: members, rooms, nicks. See the module docs.
#[derive(Debug)]
pub struct ChatHub {
    /// Longest accepted line in bytes, without its line ending.
    max_line: usize,
    /// Members indexed by connection id; `None` for ids not in the chat.
    members: Vec<Option<Member>>,
    /// How many entries of `members` are `Some`.
    count: usize,
    /// Room table indexed by `Member::room`; `None` marks a freed entry.
    rooms: Vec<Option<Room>>,
    /// Freed entries of `rooms`, reused before the table grows.
    free_rooms: Vec<u32>,
    /// Room name to index; sorted, for `/rooms`.
    room_index: BTreeMap<Box<str>, u32>,
    /// Custom nick to its owner's id, for uniqueness.
    nicks: HashMap<Box<str>, usize>,
    /// Member id to its custom nick. Kept out of `Member` so a member that
    /// never picks a nick (most of them) costs 12 bytes, not 32.
    custom: HashMap<usize, Box<str>>,
    /// The line being sent, formatted once per fan-out and reused.
    scratch: Vec<u8>,
    /// Rooms with more members than this get no join, leave or nick
    /// notices (see `NOTICE_LIMIT`).
    notice_limit: usize,
    /// How default nicks are numbered (unique across loops).
    guests: Guests,
    /// Nicks asked for and reserved here while the other servers are
    /// asked (member id to nick; the nick is in `nicks` meanwhile).
    pending: HashMap<usize, Box<str>>,
    /// A default nick formatted as text, for the other servers.
    name: String,
}

/// A member's nick for formatting: custom, or `guest<id>` without storing it.
struct Nick<'a> {
    /// The member's default number (`guest<number>`).
    id: usize,
    /// The server's tag in default nicks, with other servers.
    server: Option<u32>,
    /// The custom nick, if any.
    custom: Option<&'a str>,
}

impl fmt::Display for Nick<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.custom, self.server) {
            (Some(nick), _) => f.write_str(nick),
            (None, None) => write!(f, "guest{}", self.id),
            (None, Some(tag)) => write!(f, "guest{}-{tag:06x}", self.id),
        }
    }
}

/// How default nicks are numbered: `guest<id * stride + tag>`. One loop:
/// stride 1, tag 0 (`guest<id>`). With N loops, loop `t` numbers its
/// members `id * N + t`, so default nicks stay unique across loops; with
/// other servers, each server's 24-bit tag follows (`guest7-3fa9c1`).
#[derive(Clone, Copy, Debug)]
pub struct Guests {
    /// Number of loops.
    pub stride: usize,
    /// This loop's index.
    pub tag: usize,
    /// This server's tag (the low 24 bits of its bus node id), if it
    /// shares rooms with other servers.
    pub server: Option<u32>,
}

/// Member `id`'s nick for formatting, given the custom-nick table.
fn nick_of(custom: &HashMap<usize, Box<str>>, guests: Guests, id: usize) -> Nick<'_> {
    Nick {
        id: id.saturating_mul(guests.stride).saturating_add(guests.tag),
        server: guests.server,
        custom: custom.get(&id).map(|n| &**n),
    }
}

/// Member `id`'s nick as text: its custom nick, or its default formatted
/// into `buf`.
fn nick_text<'a>(
    custom: &'a HashMap<usize, Box<str>>,
    guests: Guests,
    id: usize,
    buf: &'a mut String,
) -> &'a str {
    if let Some(nick) = custom.get(&id) {
        return nick;
    }
    buf.clear();
    // Writing to a String cannot fail.
    let _ = write!(buf, "{}", nick_of(custom, guests, id));
    buf
}

impl Room {
    /// Queues `line` for every member except `except`, and publishes it to
    /// the room's members on other loops.
    fn broadcast(&self, except: usize, line: &[u8], out: &mut impl Outbox) {
        for &to in &self.members {
            if to != except {
                out.send(to, line);
            }
        }
        out.publish(&self.name, line);
    }
}

impl ChatHub {
    /// An empty hub with just the lobby; lines over `max_line` bytes close.
    pub fn new(max_line: usize) -> ChatHub {
        let lobby = Room {
            name: LOBBY_NAME.into(),
            members: Vec::new(),
        };
        ChatHub {
            max_line,
            members: Vec::new(),
            count: 0,
            rooms: vec![Some(lobby)],
            free_rooms: Vec::new(),
            room_index: BTreeMap::from([(LOBBY_NAME.into(), LOBBY)]),
            nicks: HashMap::new(),
            custom: HashMap::new(),
            scratch: Vec::new(),
            notice_limit: NOTICE_LIMIT,
            guests: Guests {
                stride: 1,
                tag: 0,
                server: None,
            },
            pending: HashMap::new(),
            name: String::new(),
        }
    }

    /// Sets the largest room size that still gets join, leave and nick
    /// notices (0: never send them).
    pub fn set_notice_limit(&mut self, limit: usize) {
        self.notice_limit = limit;
    }

    /// Numbers default nicks for loop `tag` of `stride` loops (see
    /// [`Guests`]); call before the first member connects.
    pub fn set_guests(&mut self, guests: Guests) {
        self.guests = Guests {
            stride: guests.stride.max(1),
            ..guests
        };
    }

    /// Delivers a room line published by another loop to this loop's
    /// members of `room` (none, if it has no such room).
    pub fn deliver(&self, name: &str, line: &[u8], out: &mut impl Outbox) {
        if let Some(r) = self
            .room_index
            .get(name)
            .and_then(|&i| room(&self.rooms, i))
        {
            for &to in &r.members {
                out.send(to, line);
            }
        }
    }

    /// A new member: welcome line to it, join `lobby`, notice to the room.
    /// `id` is a slab key (the member table grows to the largest id seen).
    /// A stale member with the same id is dropped first, without a notice.
    pub fn connect(&mut self, id: usize, out: &mut impl Outbox) {
        self.leave(id, Leave::Shutdown, out);
        if id >= self.members.len() {
            self.members.resize_with(id + 1, || None);
        }
        self.members[id] = Some(Member {
            room: LOBBY,
            slot: 0,
        });
        self.count += 1;
        self.place(id, LOBBY);
        self.arrived(id, LOBBY, out);
        fill(
            &mut self.scratch,
            format_args!(
                "* welcome to reactor chat, you are {} in {LOBBY_NAME}; /help for commands\n",
                nick_of(&self.custom, self.guests, id)
            ),
        );
        out.send(id, &self.scratch);
        fill(
            &mut self.scratch,
            format_args!(
                "* {} joined {LOBBY_NAME}\n",
                nick_of(&self.custom, self.guests, id)
            ),
        );
        self.notify(LOBBY, id, out);
    }

    /// Bytes from member `id`: handles complete lines until `out.full(id)`
    /// says the member's own output is at its cap; returns how many
    /// bytes of `data` were consumed (a trailing partial line is left for
    /// the caller to keep and pass again, prefixed, with more bytes) and
    /// the verdict for `id`. On [`Verdict::Close`] all of `data` counts as
    /// consumed (the rest is discarded). An unknown id gets `Close`.
    pub fn input(&mut self, id: usize, data: &[u8], out: &mut impl Outbox) -> (usize, Verdict) {
        if member(&self.members, id).is_none() {
            return (data.len(), Verdict::Close);
        }
        // A line of max_line bytes plus "\r\n": its '\n' is within this window.
        let window = self.max_line.saturating_add(2);
        // `rest` is what is left of `data`; every slice below is within it.
        let mut rest = data;
        while !rest.is_empty() {
            // Scan at most one window: a longer line is an error anyway, and
            // this bounds the work a client can make us do per call.
            let seen = &rest[..rest.len().min(window)];
            let Some(end) = seen.iter().position(|&b| b == b'\n') else {
                if rest.len() >= window {
                    return self.too_long(id, data.len(), out);
                }
                break; // a partial line: the caller passes it again
            };
            let line = &rest[..end];
            rest = &rest[end + 1..]; // end < rest.len(): '\n' was found there
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > self.max_line {
                return self.too_long(id, data.len(), out);
            }
            if self.line(id, line, out) == Verdict::Close {
                return (data.len(), Verdict::Close);
            }
            if out.full(id) {
                // The member's own output is at its cap (replies it does
                // not read): the rest waits until it drains.
                break;
            }
        }
        // Everything before the partial line (if any) is consumed.
        (data.len() - rest.len(), Verdict::Continue)
    }

    /// A whole message from member `id` (a WebSocket text message): each of
    /// its lines is handled as a line typed into nc would be; a final `\n`
    /// is optional. [`Verdict::Close`] on `/quit` or a line over the limit.
    pub fn message(&mut self, id: usize, msg: &[u8], out: &mut impl Outbox) -> Verdict {
        if member(&self.members, id).is_none() {
            return Verdict::Close;
        }
        let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
        for line in msg.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > self.max_line {
                return self.too_long(id, 0, out).1;
            }
            if self.line(id, line, out) == Verdict::Close {
                return Verdict::Close;
            }
        }
        Verdict::Continue
    }

    /// The member's connection is gone (or being dropped): remove it,
    /// notice to its room per `why`. Unknown id: no-op.
    pub fn disconnect(&mut self, id: usize, why: Leave, out: &mut impl Outbox) {
        self.leave(id, why, out);
    }

    /// Send one line to every member (e.g. a shutdown notice). `line` is
    /// given without its `\n` (one trailing `\n` is tolerated); the hub adds it.
    pub fn announce(&mut self, line: &str, out: &mut impl Outbox) {
        let line = line.strip_suffix('\n').unwrap_or(line);
        fill(&mut self.scratch, format_args!("{line}\n"));
        // Walks the member table (slab order), not the rooms: one pass, no duplicates.
        for (id, slot) in self.members.iter().enumerate() {
            if slot.is_some() {
                out.send(id, &self.scratch);
            }
        }
    }

    /// How many members are connected.
    pub fn members(&self) -> usize {
        self.count
    }

    /// How many rooms exist, the lobby included (so at least 1).
    pub fn rooms(&self) -> usize {
        self.room_index.len()
    }

    /// The member's nick (for logs), None if unknown id. Returns an owned
    /// `String` because default nicks are not stored; this is for logs only,
    /// never called on the message path.
    pub fn nick(&self, id: usize) -> Option<String> {
        member(&self.members, id).map(|_| nick_of(&self.custom, self.guests, id).to_string())
    }

    /// Handles one line, without its ending, within the length limit.
    fn line(&mut self, id: usize, line: &[u8], out: &mut impl Outbox) -> Verdict {
        if line.is_empty() {
            return Verdict::Continue;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            send_line(
                &mut self.scratch,
                id,
                out,
                format_args!("ERROR invalid UTF-8, line dropped\n"),
            );
            return Verdict::Continue;
        };
        // "text" is a message, "//text" a message "/text", "/cmd" a command.
        match text.strip_prefix('/') {
            None => self.say(id, text, out),
            Some(escaped) if escaped.starts_with('/') => self.say(id, escaped, out),
            Some(command) => return self.command(id, command, out),
        }
        Verdict::Continue
    }

    /// Replies with the line-length error; the verdict closes the member.
    fn too_long(&mut self, id: usize, consumed: usize, out: &mut impl Outbox) -> (usize, Verdict) {
        let max = self.max_line;
        send_line(
            &mut self.scratch,
            id,
            out,
            format_args!("ERROR line too long (max {max} bytes)\n"),
        );
        (consumed, Verdict::Close)
    }

    /// Sends `text` to the other members of `id`'s room.
    fn say(&mut self, id: usize, text: &str, out: &mut impl Outbox) {
        let Some((_, room)) = locate(&self.members, &self.rooms, id) else {
            return;
        };
        if room.members.len() < 2 && !out.has_peers() {
            return; // nobody else to hear it: skip the formatting too
        }
        let nick = nick_of(&self.custom, self.guests, id);
        fill(
            &mut self.scratch,
            format_args!("[{}] {nick}: {text}\n", room.name),
        );
        room.broadcast(id, &self.scratch, out);
    }

    /// Runs `/command` (given without the `/`); `Close` only for `/quit`.
    fn command(&mut self, id: usize, command: &str, out: &mut impl Outbox) -> Verdict {
        let (name, arg) = command
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((command, ""));
        let arg = arg.trim();
        // Borrowed once here so the error arms stay one line each.
        let scratch = &mut self.scratch;
        match name {
            "nick" if arg.is_empty() => {
                send_line(scratch, id, out, format_args!("ERROR usage: /nick NAME\n"))
            }
            "join" if arg.is_empty() => {
                send_line(scratch, id, out, format_args!("ERROR usage: /join ROOM\n"))
            }
            "nick" => self.set_nick(id, arg, out),
            "join" => self.join(id, arg, out),
            "who" => self.who(id, out),
            "rooms" => self.list_rooms(id, out),
            "help" => out.send(id, HELP.as_bytes()),
            "quit" => {
                out.send(id, b"* bye\n");
                self.leave(id, Leave::Quit, out);
                return Verdict::Close;
            }
            _ => send_line(
                scratch,
                id,
                out,
                format_args!("ERROR unknown command /{name} (try /help)\n"),
            ),
        }
        Verdict::Continue
    }

    /// `/nick NAME`: validates, checks uniqueness (with the other
    /// servers, if any: then the answer comes later), renames, tells the
    /// room.
    fn set_nick(&mut self, id: usize, name: &str, out: &mut impl Outbox) {
        // Compare against the default by formatting it into scratch: no allocation.
        fill(
            &mut self.scratch,
            format_args!("{}", nick_of(&HashMap::new(), self.guests, id)),
        );
        let own_default = self.scratch == name.as_bytes();
        let guest_like = name
            .as_bytes()
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"guest"));
        if !valid_name(name) || (guest_like && !own_default) {
            let msg = format_args!("ERROR invalid nick (1-32 of A-Z a-z 0-9 _ -)\n");
            return send_line(&mut self.scratch, id, out, msg);
        }
        if self.pending.contains_key(&id) {
            let msg = format_args!("ERROR a nick change is already under way\n");
            return send_line(&mut self.scratch, id, out, msg);
        }
        // Defaults cannot collide: custom nicks never start with "guest".
        // A nick reserved for another member here counts as taken.
        if self.nicks.get(name).is_some_and(|&owner| owner != id) {
            let msg = format_args!("ERROR nick {name} is taken\n");
            return send_line(&mut self.scratch, id, out, msg);
        }
        let old = nick_of(&self.custom, self.guests, id);
        // Taking the nick you already have: confirm it, tell nobody.
        let unchanged = match old.custom {
            Some(custom) => custom == name,
            None => own_default,
        };
        if unchanged {
            let msg = format_args!("* you are now {name}\n");
            return send_line(&mut self.scratch, id, out, msg);
        }
        // Other servers may hold a custom nick; a default is ours alone.
        if !own_default && out.shared() {
            match out.ask(id, Ask::Nick(name)) {
                Asked::Sent => {
                    self.nicks.insert(name.into(), id);
                    self.pending.insert(id, name.into());
                    return;
                }
                Asked::Unreachable => {
                    let msg = format_args!(
                        "ERROR nicks cannot change while the other servers are out of reach; you are still {old}\n"
                    );
                    return send_line(&mut self.scratch, id, out, msg);
                }
                Asked::Local => {}
            }
        }
        self.apply_nick(id, name, own_default, out);
    }

    /// Renames member `id` to `name` (checked, and taken): tells its room,
    /// the other servers, then it.
    fn apply_nick(&mut self, id: usize, name: &str, own_default: bool, out: &mut impl Outbox) {
        let Some((_, room)) = locate(&self.members, &self.rooms, id) else {
            return;
        };
        let old = nick_of(&self.custom, self.guests, id);
        fill(&mut self.scratch, format_args!("* {old} is now {name}\n"));
        if room.members.len() <= self.notice_limit {
            room.broadcast(id, &self.scratch, out);
        }
        if out.shared() {
            let had_custom = self.custom.contains_key(&id);
            let old = nick_text(&self.custom, self.guests, id, &mut self.name);
            out.renamed(&room.name, old, name);
            if had_custom {
                out.release(old);
            }
        }
        self.rename(id, (!own_default).then_some(name));
        send_line(
            &mut self.scratch,
            id,
            out,
            format_args!("* you are now {name}\n"),
        );
    }

    /// The other servers' answer to member `id`'s `/nick NAME`: taken for
    /// it (`ok`), or held by a member elsewhere. An answer for a member
    /// that has gone lets the nick go again.
    pub fn nick_answer(&mut self, id: usize, nick: &str, ok: bool, out: &mut impl Outbox) {
        if self.pending.get(&id).is_none_or(|p| **p != *nick) {
            if ok {
                out.release(nick);
            }
            return;
        }
        self.pending.remove(&id);
        if ok {
            return self.apply_nick(id, nick, false, out);
        }
        self.nicks.remove(nick);
        let msg = format_args!("ERROR nick {nick} is taken\n");
        send_line(&mut self.scratch, id, out, msg);
    }

    /// Member `id`'s question went unanswered (the other servers went out
    /// of reach meanwhile).
    pub fn no_answer(&mut self, id: usize, out: &mut impl Outbox) {
        if member(&self.members, id).is_none() {
            return;
        }
        if let Some(nick) = self.pending.remove(&id) {
            self.nicks.remove(&nick);
        }
        let msg = format_args!(
            "ERROR the other servers went out of reach before they answered; try again\n"
        );
        send_line(&mut self.scratch, id, out, msg);
    }

    /// Member `id`'s custom nick `nick` turned out to be held by a member
    /// of another server (taken while the servers were apart): `id` is
    /// its default nick again, and told so.
    pub fn nick_lost(&mut self, id: usize, nick: &str, out: &mut impl Outbox) {
        if self.custom.get(&id).is_none_or(|n| **n != *nick) {
            return;
        }
        fill(
            &mut self.scratch,
            format_args!("{}", nick_of(&HashMap::new(), self.guests, id)),
        );
        let guest = String::from_utf8_lossy(&self.scratch).into_owned();
        let Some((_, room)) = locate(&self.members, &self.rooms, id) else {
            return;
        };
        fill(&mut self.scratch, format_args!("* {nick} is now {guest}\n"));
        if room.members.len() <= self.notice_limit {
            room.broadcast(id, &self.scratch, out);
        }
        out.renamed(&room.name, nick, &guest);
        self.rename(id, None);
        let msg = format_args!(
            "* your nick {nick} was taken on another server while the servers were apart; you are {guest} again\n"
        );
        send_line(&mut self.scratch, id, out, msg);
    }

    /// Sets `id`'s custom nick (`None`: back to the default), keeping `nicks` in step.
    fn rename(&mut self, id: usize, nick: Option<&str>) {
        if member(&self.members, id).is_none() {
            return;
        }
        if let Some(old) = self.custom.remove(&id) {
            self.nicks.remove(&old);
        }
        if let Some(nick) = nick {
            self.custom.insert(id, nick.into());
            self.nicks.insert(nick.into(), id);
        }
    }

    /// `/join ROOM`: leaves the old room (notice), enters the new (notice, reply).
    fn join(&mut self, id: usize, name: &str, out: &mut impl Outbox) {
        if !valid_name(name) {
            let msg = format_args!("ERROR invalid room (1-32 of A-Z a-z 0-9 _ -)\n");
            return send_line(&mut self.scratch, id, out, msg);
        }
        let Some((m, old)) = locate(&self.members, &self.rooms, id) else {
            return;
        };
        if *old.name == *name {
            let msg = format_args!("* you are already in {name}\n");
            return send_line(&mut self.scratch, id, out, msg);
        }
        // Leave first (the old room must not hear the join), and reap the
        // old room before opening the new one so its table entry is reused.
        let old_index = m.room;
        fill(
            &mut self.scratch,
            format_args!(
                "* {} left {}\n",
                nick_of(&self.custom, self.guests, id),
                old.name
            ),
        );
        self.unplace(id);
        self.notify(old_index, id, out);
        self.departed(id, old_index, out);
        self.reap(old_index);

        let new_index = self.open_room(name);
        self.place(id, new_index);
        self.arrived(id, new_index, out);
        // Look the member up again: `place` changed its room and slot.
        let Some((_, new)) = locate(&self.members, &self.rooms, id) else {
            return;
        };
        fill(
            &mut self.scratch,
            format_args!(
                "* {} joined {name}\n",
                nick_of(&self.custom, self.guests, id)
            ),
        );
        let n = new.members.len();
        if n <= self.notice_limit {
            new.broadcast(id, &self.scratch, out);
        }
        let msg = format_args!("* you joined {name} ({n} members)\n");
        send_line(&mut self.scratch, id, out, msg);
    }

    /// `/who`: the nicks in `id`'s room, at most `MAX_LISTED` of them
    /// (from every server, when the answer comes, if others share it).
    fn who(&mut self, id: usize, out: &mut impl Outbox) {
        let Some((_, room)) = locate(&self.members, &self.rooms, id) else {
            return;
        };
        let apart = match out.shared() {
            true => match out.ask(id, Ask::Who(&room.name)) {
                Asked::Sent => return,
                Asked::Unreachable => true,
                Asked::Local => false,
            },
            false => false,
        };
        fill(&mut self.scratch, format_args!("* {}: ", room.name));
        for (i, &other) in room.members.iter().take(MAX_LISTED).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            if member(&self.members, other).is_some() {
                let nick = nick_of(&self.custom, self.guests, other);
                push(&mut self.scratch, format_args!("{sep}{nick}"));
            }
        }
        let shown = room.members.len().min(MAX_LISTED);
        finish_list(&mut self.scratch, shown, room.members.len(), apart);
        out.send(id, &self.scratch);
    }

    /// The other servers' answer to member `id`'s `/who` in `room`: up to
    /// `MAX_LISTED` of its `total` members' nicks.
    pub fn who_answer(
        &mut self,
        id: usize,
        room: &str,
        names: &[String],
        total: u64,
        out: &mut impl Outbox,
    ) {
        if member(&self.members, id).is_none() {
            return;
        }
        fill(&mut self.scratch, format_args!("* {room}: "));
        for (i, name) in names.iter().take(MAX_LISTED).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            push(&mut self.scratch, format_args!("{sep}{name}"));
        }
        let shown = names.len().min(MAX_LISTED);
        finish_list(&mut self.scratch, shown, total as usize, false);
        out.send(id, &self.scratch);
    }

    /// `/rooms`: room names with member counts, sorted, at most
    /// `MAX_LISTED` (summed over every server, when the answer comes, if
    /// others share them).
    fn list_rooms(&mut self, id: usize, out: &mut impl Outbox) {
        let apart = match out.shared() {
            true => match out.ask(id, Ask::Rooms) {
                Asked::Sent => return,
                Asked::Unreachable => true,
                Asked::Local => false,
            },
            false => false,
        };
        fill(&mut self.scratch, format_args!("* rooms: "));
        // The BTreeMap iterates in name order: no sort, no allocation.
        for (i, (name, &index)) in self.room_index.iter().take(MAX_LISTED).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let size = room(&self.rooms, index).map_or(0, |r| r.members.len());
            push(&mut self.scratch, format_args!("{sep}{name} ({size})"));
        }
        let total = self.room_index.len();
        finish_list(&mut self.scratch, total.min(MAX_LISTED), total, apart);
        out.send(id, &self.scratch);
    }

    /// The other servers' answer to member `id`'s `/rooms`: up to
    /// `MAX_LISTED` of `total` rooms, sorted, with their sizes.
    pub fn rooms_answer(
        &mut self,
        id: usize,
        rooms: &[(String, u64)],
        total: u64,
        out: &mut impl Outbox,
    ) {
        if member(&self.members, id).is_none() {
            return;
        }
        fill(&mut self.scratch, format_args!("* rooms: "));
        for (i, (name, size)) in rooms.iter().take(MAX_LISTED).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            push(&mut self.scratch, format_args!("{sep}{name} ({size})"));
        }
        let shown = rooms.len().min(MAX_LISTED);
        finish_list(&mut self.scratch, shown, total as usize, false);
        out.send(id, &self.scratch);
    }

    /// Every member: its id, room, nick, and whether the nick is custom
    /// (for telling another server all that is here at once).
    pub fn roster(&mut self, mut f: impl FnMut(usize, &str, &str, bool)) {
        for (id, m) in self.members.iter().enumerate() {
            let Some(m) = m else { continue };
            let Some(room) = room(&self.rooms, m.room) else {
                continue;
            };
            let custom = self.custom.contains_key(&id);
            let nick = nick_text(&self.custom, self.guests, id, &mut self.name);
            f(id, &room.name, nick, custom);
        }
    }

    /// Removes member `id` (no-op if unknown), with the notice `why` asks for.
    fn leave(&mut self, id: usize, why: Leave, out: &mut impl Outbox) {
        let Some((m, room)) = locate(&self.members, &self.rooms, id) else {
            return;
        };
        let index = m.room;
        let reason = match why {
            Leave::Quit | Leave::Closed => Some(""),
            Leave::TooSlow => Some(" (too slow)"),
            Leave::TimedOut => Some(" (idle)"),
            Leave::Shutdown => None,
        };
        if let Some(reason) = reason {
            let nick = nick_of(&self.custom, self.guests, id);
            fill(
                &mut self.scratch,
                format_args!("* {nick} left {}{reason}\n", room.name),
            );
        }
        // The notice is formatted while the nick still exists; it goes out
        // after removal, so the room's list no longer holds the leaver.
        self.unplace(id);
        if reason.is_some() {
            self.notify(index, id, out);
        }
        // After the notice: the room is still subscribed when it goes out.
        self.departed(id, index, out);
        if let Some(nick) = self.pending.remove(&id) {
            self.nicks.remove(&nick); // a reservation, never granted
        }
        if out.shared()
            && let Some(nick) = self.custom.get(&id)
        {
            out.release(nick);
        }
        self.rename(id, None); // frees a custom nick for others
        if let Some(slot) = self.members.get_mut(id) {
            *slot = None;
            self.count -= 1;
        }
        if out.shared() {
            out.gone(id);
        }
        self.reap(index);
    }

    /// Sends the scratch line, a notice, to room `index` except `except`,
    /// unless the room is over the notice limit.
    fn notify(&self, index: u32, except: usize, out: &mut impl Outbox) {
        if let Some(room) = room(&self.rooms, index)
            && room.members.len() <= self.notice_limit
        {
            room.broadcast(except, &self.scratch, out);
        }
    }

    /// With other servers: member `id` is now in room `index` (its first
    /// member here subscribes it).
    fn arrived(&mut self, id: usize, index: u32, out: &mut impl Outbox) {
        if !out.shared() {
            return;
        }
        let Some(room) = room(&self.rooms, index) else {
            return;
        };
        if room.members.len() == 1 {
            out.subscribe(&room.name);
        }
        out.present(
            &room.name,
            nick_text(&self.custom, self.guests, id, &mut self.name),
        );
    }

    /// With other servers: member `id` has left room `index` (its last
    /// member here unsubscribes it). Called after `unplace`.
    fn departed(&mut self, id: usize, index: u32, out: &mut impl Outbox) {
        if !out.shared() {
            return;
        }
        let Some(room) = room(&self.rooms, index) else {
            return;
        };
        out.absent(
            &room.name,
            nick_text(&self.custom, self.guests, id, &mut self.name),
        );
        if room.members.is_empty() {
            out.unsubscribe(&room.name);
        }
    }

    /// Appends member `id` to room `index` and records its room and slot.
    fn place(&mut self, id: usize, index: u32) {
        let Some(room) = self.rooms.get_mut(index as usize).and_then(Option::as_mut) else {
            return;
        };
        // Slots fit in u32: a room holds at most one entry per connection.
        let slot = room.members.len() as u32;
        room.members.push(id);
        if let Some(m) = self.members.get_mut(id).and_then(Option::as_mut) {
            m.room = index;
            m.slot = slot;
        }
    }

    /// Takes member `id` out of its room's list in O(1), fixing the slot of
    /// the member moved into its place. The room itself stays (see `reap`).
    fn unplace(&mut self, id: usize) {
        let Some(m) = member(&self.members, id) else {
            return;
        };
        let slot = m.slot as usize;
        let Some(room) = self.rooms.get_mut(m.room as usize).and_then(Option::as_mut) else {
            return;
        };
        debug_assert_eq!(room.members.get(slot), Some(&id), "slot out of step");
        if room.members.get(slot) != Some(&id) {
            return;
        }
        // The last member moves into `slot`: O(1), and only its slot changes.
        room.members.swap_remove(slot);
        if let Some(&moved) = room.members.get(slot)
            && let Some(moved) = self.members.get_mut(moved).and_then(Option::as_mut)
        {
            moved.slot = slot as u32;
        }
    }

    /// The index of room `name`, creating the room if needed.
    fn open_room(&mut self, name: &str) -> u32 {
        if let Some(&index) = self.room_index.get(name) {
            return index;
        }
        let room = Room {
            name: name.into(),
            members: Vec::new(),
        };
        let index = match self.free_rooms.pop() {
            Some(index) => {
                if let Some(entry) = self.rooms.get_mut(index as usize) {
                    *entry = Some(room);
                }
                index
            }
            None => {
                self.rooms.push(Some(room));
                // Fits in u32: there are never more rooms than members.
                (self.rooms.len() - 1) as u32
            }
        };
        self.room_index.insert(name.into(), index);
        index
    }

    /// Removes room `index` if it is empty and not the lobby.
    fn reap(&mut self, index: u32) {
        if index == LOBBY {
            return;
        }
        let Some(entry) = self.rooms.get_mut(index as usize) else {
            return;
        };
        if let Some(room) = entry.take_if(|r| r.members.is_empty()) {
            self.room_index.remove(&room.name);
            self.free_rooms.push(index);
        }
    }
}

/// Member `id`, if connected.
fn member(members: &[Option<Member>], id: usize) -> Option<&Member> {
    members.get(id)?.as_ref()
}

/// Room `index`, if it exists.
fn room(rooms: &[Option<Room>], index: u32) -> Option<&Room> {
    rooms.get(index as usize)?.as_ref()
}

/// Member `id` and its room. Free function (not a method) so callers can
/// still borrow the hub's scratch mutably while holding these.
fn locate<'a>(
    members: &'a [Option<Member>],
    rooms: &'a [Option<Room>],
    id: usize,
) -> Option<(&'a Member, &'a Room)> {
    let m = member(members, id)?;
    Some((m, room(rooms, m.room)?))
}

/// Whether `name` is a valid nick or room name: 1..=32 of `[A-Za-z0-9_-]`.
fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Appends formatted text to `buf` (no allocation once `buf` has grown).
fn push(buf: &mut Vec<u8>, args: fmt::Arguments<'_>) {
    // Writing into a Vec cannot fail: the io::Result is always Ok.
    let _ = buf.write_fmt(args);
}

/// Replaces `buf`'s contents with formatted text.
fn fill(buf: &mut Vec<u8>, args: fmt::Arguments<'_>) {
    buf.clear();
    push(buf, args);
}

/// Formats a line into `buf` and queues it for `to`.
fn send_line(buf: &mut Vec<u8>, to: usize, out: &mut impl Outbox, args: fmt::Arguments<'_>) {
    fill(buf, args);
    out.send(to, buf);
}

/// Ends a list of `total` items of which `shown` were shown; `apart`
/// says it is this server's alone, the others being out of reach.
fn finish_list(buf: &mut Vec<u8>, shown: usize, total: usize, apart: bool) {
    if total > shown {
        push(buf, format_args!(", and {} more", total - shown));
    }
    if apart {
        push(
            buf,
            format_args!(" (this server only: the other servers are out of reach)"),
        );
    }
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `Outbox` that collects each connection's bytes.
    #[derive(Default, Debug, PartialEq)]
    struct Sink(HashMap<usize, Vec<u8>>);

    impl Outbox for Sink {
        fn send(&mut self, to: usize, bytes: &[u8]) {
            self.0.entry(to).or_default().extend_from_slice(bytes);
        }
    }

    impl Sink {
        /// Everything queued for `id` so far, as text; clears it.
        fn take(&mut self, id: usize) -> String {
            String::from_utf8(self.0.remove(&id).unwrap_or_default()).expect("utf-8 output")
        }

        /// Ids that received anything, sorted.
        fn recipients(&self) -> Vec<usize> {
            let mut ids: Vec<usize> = self.0.keys().copied().collect();
            ids.sort_unstable();
            ids
        }
    }

    /// A hub (max line 64) with members `0..n` in the lobby and an empty sink.
    fn hub(n: usize) -> (ChatHub, Sink) {
        let mut hub = ChatHub::new(64);
        let mut out = Sink::default();
        for id in 0..n {
            hub.connect(id, &mut out);
        }
        out.0.clear();
        (hub, out)
    }

    /// Feeds `text` whole; asserts it was consumed entirely; returns the verdict.
    fn say(hub: &mut ChatHub, id: usize, text: &str, out: &mut impl Outbox) -> Verdict {
        let (used, verdict) = hub.input(id, text.as_bytes(), out);
        assert_eq!(used, text.len(), "all of {text:?} consumed");
        verdict
    }

    /// Feeds `script` one byte at a time, keeping the unconsumed tail as the reactor does.
    fn say_bytewise(hub: &mut ChatHub, id: usize, script: &[u8], out: &mut Sink) -> Verdict {
        let mut pending = Vec::new();
        for &b in script {
            pending.push(b);
            let (used, verdict) = hub.input(id, &pending, out);
            pending.drain(..used);
            if verdict == Verdict::Close {
                return verdict;
            }
        }
        Verdict::Continue
    }

    #[test]
    fn notices_are_muted_in_rooms_over_the_limit() {
        let mut hub = ChatHub::new(64);
        hub.set_notice_limit(2);
        let mut out = Sink::default();
        hub.connect(0, &mut out);
        hub.connect(1, &mut out);
        assert_eq!(
            out.take(0),
            "* welcome to reactor chat, you are guest0 in lobby; /help for commands\n* guest1 joined lobby\n"
        );
        out.take(1);
        hub.connect(2, &mut out);
        assert_eq!(
            out.take(0),
            "",
            "a room of 3 is over the limit of 2: no join notice"
        );
        hub.input(2, b"hello\n", &mut out);
        assert_eq!(
            out.take(0),
            "[lobby] guest2: hello\n",
            "messages still flow"
        );
        assert_eq!(out.take(1), "[lobby] guest2: hello\n");
        hub.disconnect(2, Leave::Closed, &mut out);
        assert_eq!(
            out.take(1),
            "* guest2 left lobby\n",
            "back at 2 members: notices again"
        );
    }

    #[test]
    fn connect_welcomes_and_notifies_lobby() {
        let mut hub = ChatHub::new(64);
        let mut out = Sink::default();
        hub.connect(3, &mut out);
        assert_eq!(
            out.take(3),
            "* welcome to reactor chat, you are guest3 in lobby; /help for commands\n"
        );
        hub.connect(7, &mut out);
        assert_eq!(out.take(3), "* guest7 joined lobby\n");
        assert!(out.take(7).starts_with("* welcome"));
        assert_eq!(hub.nick(7).as_deref(), Some("guest7"));
        assert_eq!(hub.nick(4), None);
    }

    #[test]
    fn message_goes_to_others_only() {
        let (mut hub, mut out) = hub(3);
        assert_eq!(say(&mut hub, 1, "hello\n", &mut out), Verdict::Continue);
        assert_eq!(out.recipients(), vec![0, 2]);
        assert_eq!(out.take(0), "[lobby] guest1: hello\n");
        assert_eq!(out.take(2), "[lobby] guest1: hello\n");
    }

    #[test]
    fn alone_in_a_room_sends_nothing() {
        let (mut hub, mut out) = hub(1);
        say(&mut hub, 0, "anyone?\n", &mut out);
        assert!(out.0.is_empty());
    }

    #[test]
    fn many_lines_keep_sender_order() {
        let (mut hub, mut out) = hub(2);
        let script: String = (0..500).map(|i| format!("line {i}\n")).collect();
        say(&mut hub, 0, &script, &mut out);
        let expected: String = (0..500)
            .map(|i| format!("[lobby] guest0: line {i}\n"))
            .collect();
        assert_eq!(out.take(1), expected);
    }

    #[test]
    fn crlf_is_stripped() {
        let (mut hub, mut out) = hub(2);
        say(&mut hub, 0, "hi\r\n/nick bob\r\n", &mut out);
        assert_eq!(out.take(1), "[lobby] guest0: hi\n* guest0 is now bob\n");
        assert_eq!(out.take(0), "* you are now bob\n");
    }

    #[test]
    fn empty_lines_are_ignored() {
        let (mut hub, mut out) = hub(2);
        say(&mut hub, 0, "\n\r\n\n", &mut out);
        assert!(out.0.is_empty());
    }

    #[test]
    fn double_slash_sends_one_slash() {
        let (mut hub, mut out) = hub(2);
        say(&mut hub, 0, "//shrug\n", &mut out);
        assert_eq!(out.take(1), "[lobby] guest0: /shrug\n");
        assert_eq!(out.take(0), "");
    }

    #[test]
    fn nick_ok_notifies_room_and_replaces_old() {
        let (mut hub, mut out) = hub(2);
        say(&mut hub, 0, "/nick alice\n", &mut out);
        assert_eq!(out.take(0), "* you are now alice\n");
        assert_eq!(out.take(1), "* guest0 is now alice\n");
        say(&mut hub, 0, "/nick alicia\nhi\n", &mut out);
        assert_eq!(out.take(1), "* alice is now alicia\n[lobby] alicia: hi\n");
        // The old nick was released.
        say(&mut hub, 1, "/nick alice\n", &mut out);
        assert_eq!(out.take(1), "* you are now alice\n");
        assert_eq!(hub.nick(0).as_deref(), Some("alicia"));
    }

    #[test]
    fn nick_taken() {
        let (mut hub, mut out) = hub(2);
        say(&mut hub, 0, "/nick bob\n", &mut out);
        out.0.clear();
        say(&mut hub, 1, "/nick bob\n", &mut out);
        assert_eq!(out.take(1), "ERROR nick bob is taken\n");
        assert_eq!(out.take(0), "");
        assert_eq!(hub.nick(1).as_deref(), Some("guest1"));
    }

    #[test]
    fn nick_invalid() {
        let (mut hub, mut out) = hub(1);
        let long = "x".repeat(33);
        for bad in ["bo b", "bob!", "héllo", long.as_str()] {
            say(&mut hub, 0, &format!("/nick {bad}\n"), &mut out);
            assert_eq!(
                out.take(0),
                "ERROR invalid nick (1-32 of A-Z a-z 0-9 _ -)\n",
                "{bad:?}"
            );
        }
        say(
            &mut hub,
            0,
            &format!("/nick {}\n", "x".repeat(32)),
            &mut out,
        );
        assert_eq!(out.take(0), format!("* you are now {}\n", "x".repeat(32)));
    }

    #[test]
    fn nick_guest_prefix_only_for_own_default() {
        let (mut hub, mut out) = hub(2);
        for bad in ["guest1", "GuestX", "guest05", "guest"] {
            say(&mut hub, 0, &format!("/nick {bad}\n"), &mut out);
            assert_eq!(
                out.take(0),
                "ERROR invalid nick (1-32 of A-Z a-z 0-9 _ -)\n"
            );
        }
        say(&mut hub, 0, "/nick zed\n/nick guest0\n", &mut out);
        assert_eq!(out.take(0), "* you are now zed\n* you are now guest0\n");
        assert_eq!(out.take(1), "* guest0 is now zed\n* zed is now guest0\n");
        assert!(hub.nicks.is_empty(), "back to the default stores nothing");
        // Already the default: a reply, no notice.
        say(&mut hub, 0, "/nick guest0\n", &mut out);
        assert_eq!(out.take(0), "* you are now guest0\n");
        assert_eq!(out.take(1), "");
    }

    #[test]
    fn join_notifies_both_rooms_and_counts() {
        let (mut hub, mut out) = hub(3);
        say(&mut hub, 1, "/join games\n", &mut out);
        assert_eq!(out.take(1), "* you joined games (1 members)\n");
        assert_eq!(out.take(0), "* guest1 left lobby\n");
        assert_eq!(out.take(2), "* guest1 left lobby\n");
        say(&mut hub, 2, "/join games\n", &mut out);
        assert_eq!(out.take(2), "* you joined games (2 members)\n");
        assert_eq!(out.take(1), "* guest2 joined games\n");
        assert_eq!(out.take(0), "* guest2 left lobby\n");
        say(&mut hub, 2, "in games\n", &mut out);
        assert_eq!(out.recipients(), vec![1]);
        assert_eq!(out.take(1), "[games] guest2: in games\n");
    }

    #[test]
    fn join_same_room_and_invalid_room() {
        let (mut hub, mut out) = hub(2);
        say(&mut hub, 0, "/join lobby\n", &mut out);
        assert_eq!(out.take(0), "* you are already in lobby\n");
        say(&mut hub, 0, "/join no/way\n", &mut out);
        assert_eq!(
            out.take(0),
            "ERROR invalid room (1-32 of A-Z a-z 0-9 _ -)\n"
        );
        assert_eq!(out.take(1), "");
    }

    #[test]
    fn empty_room_is_removed_but_lobby_stays() {
        let (mut hub, mut out) = hub(1);
        say(&mut hub, 0, "/join a\n", &mut out);
        assert_eq!(hub.rooms(), 2);
        say(&mut hub, 0, "/join b\n", &mut out);
        assert_eq!(hub.rooms(), 2, "a was removed, lobby kept though empty");
        assert_eq!(hub.rooms.len(), 2, "b reused a's table entry");
        out.0.clear();
        say(&mut hub, 0, "/rooms\n", &mut out);
        assert_eq!(out.take(0), "* rooms: b (1), lobby (0)\n");
    }

    #[test]
    fn who_lists_room_members() {
        let (mut hub, mut out) = hub(3);
        say(&mut hub, 1, "/nick bob\n", &mut out);
        out.0.clear();
        say(&mut hub, 0, "/who\n", &mut out);
        assert_eq!(out.take(0), "* lobby: guest0, bob, guest2\n");
        assert!(out.0.is_empty());
    }

    #[test]
    fn who_stops_at_100_names() {
        let (mut hub, mut out) = hub(103);
        say(&mut hub, 0, "/who\n", &mut out);
        let names: Vec<String> = (0..100).map(|i| format!("guest{i}")).collect();
        assert_eq!(
            out.take(0),
            format!("* lobby: {}, and 3 more\n", names.join(", "))
        );
    }

    #[test]
    fn rooms_sorted_with_counts() {
        let (mut hub, mut out) = hub(4);
        say(&mut hub, 1, "/join games\n", &mut out);
        say(&mut hub, 2, "/join art\n", &mut out);
        out.0.clear();
        say(&mut hub, 0, "/rooms\n", &mut out);
        assert_eq!(out.take(0), "* rooms: art (1), games (1), lobby (2)\n");
    }

    #[test]
    fn rooms_stops_at_100() {
        let (mut hub, mut out) = hub(102);
        for id in 1..102 {
            say(&mut hub, id, &format!("/join r{id:03}\n"), &mut out);
        }
        out.0.clear();
        say(&mut hub, 0, "/rooms\n", &mut out);
        // Sorted by name: lobby, r001 .. r099 are listed; r100 and r101 are not.
        let listed: Vec<String> = std::iter::once("lobby (1)".to_string())
            .chain((1..100).map(|i| format!("r{i:03} (1)")))
            .collect();
        assert_eq!(
            out.take(0),
            format!("* rooms: {}, and 2 more\n", listed.join(", "))
        );
        assert_eq!(hub.rooms(), 102);
    }

    #[test]
    fn quit_closes_and_notifies_once() {
        let (mut hub, mut out) = hub(2);
        let (used, verdict) = hub.input(0, b"/quit\nnot handled\n", &mut out);
        assert_eq!((used, verdict), (18, Verdict::Close));
        assert_eq!(out.take(0), "* bye\n");
        assert_eq!(out.take(1), "* guest0 left lobby\n");
        assert_eq!(hub.members(), 1);
        hub.disconnect(0, Leave::Closed, &mut out);
        assert!(out.0.is_empty(), "later disconnect is a no-op");
        assert_eq!(hub.members(), 1);
    }

    #[test]
    fn help_lines_start_with_star() {
        let (mut hub, mut out) = hub(1);
        say(&mut hub, 0, "/help\n", &mut out);
        let help = out.take(0);
        assert!(help.lines().count() >= 6);
        assert!(help.lines().all(|l| l.starts_with("* ")), "{help}");
        assert!(help.contains("/nick NAME") && help.contains("/join ROOM"));
    }

    #[test]
    fn unknown_command() {
        let (mut hub, mut out) = hub(2);
        say(&mut hub, 0, "/dance now\n/\n", &mut out);
        assert_eq!(
            out.take(0),
            "ERROR unknown command /dance (try /help)\nERROR unknown command / (try /help)\n"
        );
        assert_eq!(out.take(1), "");
    }

    #[test]
    fn usage_errors() {
        let (mut hub, mut out) = hub(1);
        say(&mut hub, 0, "/nick\n/join   \n", &mut out);
        assert_eq!(
            out.take(0),
            "ERROR usage: /nick NAME\nERROR usage: /join ROOM\n"
        );
    }

    #[test]
    fn invalid_utf8_is_dropped_and_connection_continues() {
        let (mut hub, mut out) = hub(2);
        let (used, verdict) = hub.input(0, b"bad \xff\xfe\nok\n", &mut out);
        assert_eq!((used, verdict), (10, Verdict::Continue));
        assert_eq!(out.take(0), "ERROR invalid UTF-8, line dropped\n");
        assert_eq!(out.take(1), "[lobby] guest0: ok\n");
    }

    #[test]
    fn too_long_complete_line_closes_after_earlier_lines() {
        let mut hub = ChatHub::new(5);
        let mut out = Sink::default();
        hub.connect(0, &mut out);
        hub.connect(1, &mut out);
        out.0.clear();
        // "12345" fits exactly, with \r\n too; "123456" does not.
        let (used, verdict) = hub.input(0, b"12345\r\n123456\nlater\n", &mut out);
        assert_eq!((used, verdict), (20, Verdict::Close));
        assert_eq!(out.take(1), "[lobby] guest0: 12345\n");
        assert_eq!(out.take(0), "ERROR line too long (max 5 bytes)\n");
    }

    #[test]
    fn too_long_partial_line_closes() {
        let mut hub = ChatHub::new(5);
        let mut out = Sink::default();
        hub.connect(0, &mut out);
        hub.connect(1, &mut out);
        out.0.clear();
        // 6 bytes pending could still be "12345\r": wait for more.
        assert_eq!(
            hub.input(0, b"ok\n12345\r", &mut out),
            (3, Verdict::Continue)
        );
        assert_eq!(out.take(0), "");
        // 7 bytes and no newline: too long.
        assert_eq!(hub.input(0, b"1234567", &mut out), (7, Verdict::Close));
        assert_eq!(out.take(0), "ERROR line too long (max 5 bytes)\n");
        assert_eq!(out.take(1), "[lobby] guest0: ok\n");
    }

    #[test]
    fn partial_line_is_left_and_completed_later() {
        let (mut hub, mut out) = hub(2);
        let (used, verdict) = hub.input(0, b"one\ntw", &mut out);
        assert_eq!((used, verdict), (4, Verdict::Continue));
        assert_eq!(out.take(1), "[lobby] guest0: one\n");
        assert_eq!(hub.input(0, b"tw", &mut out), (0, Verdict::Continue));
        assert_eq!(hub.input(0, b"two\r\n", &mut out), (5, Verdict::Continue));
        assert_eq!(out.take(1), "[lobby] guest0: two\n");
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let script: &[u8] = b"hi\r\n\n//x\n/nick neo\n/join zion\n/who\n/rooms\n\xff\n\
            /join lobby\n/bogus\n/nick\nbye\r\n123456789012\npartial";
        // 4: closes at "/nick neo"; 10: at "123456789012"; 64: ends with a partial line.
        let cases = [
            (4, Verdict::Close),
            (10, Verdict::Close),
            (64, Verdict::Continue),
        ];
        for (max_line, verdict) in cases {
            let run = |bytewise: bool| {
                let mut hub = ChatHub::new(max_line);
                let mut out = Sink::default();
                for id in 0..3 {
                    hub.connect(id, &mut out);
                }
                let verdict = if bytewise {
                    say_bytewise(&mut hub, 1, script, &mut out)
                } else {
                    hub.input(1, script, &mut out).1
                };
                (verdict, out)
            };
            let (whole_verdict, whole) = run(false);
            let (bytes_verdict, bytes) = run(true);
            assert_eq!(whole_verdict, bytes_verdict, "max_line {max_line}");
            assert_eq!(whole, bytes, "max_line {max_line}");
            assert_eq!(whole_verdict, verdict, "max_line {max_line}");
            assert!(whole.0.values().map(Vec::len).sum::<usize>() > 300);
        }
    }

    #[test]
    fn disconnect_reasons_choose_the_notice() {
        let cases = [
            (Leave::Quit, "* guest1 left lobby\n"),
            (Leave::Closed, "* guest1 left lobby\n"),
            (Leave::TooSlow, "* guest1 left lobby (too slow)\n"),
            (Leave::TimedOut, "* guest1 left lobby (idle)\n"),
            (Leave::Shutdown, ""),
        ];
        for (why, notice) in cases {
            let (mut hub, mut out) = hub(2);
            hub.disconnect(1, why, &mut out);
            assert_eq!(out.take(0), notice, "{why:?}");
            assert_eq!(out.take(1), "", "{why:?}: nothing to the leaver");
            assert_eq!(hub.members(), 1);
        }
    }

    #[test]
    fn disconnect_frees_nick_and_room() {
        let (mut hub, mut out) = hub(2);
        say(&mut hub, 0, "/nick trin\n/join den\n", &mut out);
        assert_eq!(hub.rooms(), 2);
        hub.disconnect(0, Leave::Closed, &mut out);
        out.0.clear();
        assert_eq!(hub.rooms(), 1);
        say(&mut hub, 1, "/nick trin\n", &mut out);
        assert_eq!(out.take(1), "* you are now trin\n");
    }

    #[test]
    fn unknown_ids_are_harmless() {
        let (mut hub, mut out) = hub(1);
        hub.disconnect(42, Leave::Closed, &mut out);
        assert_eq!(hub.input(42, b"hi\n", &mut out), (3, Verdict::Close));
        assert!(out.0.is_empty());
        assert_eq!(hub.members(), 1);
    }

    #[test]
    fn announce_reaches_every_member() {
        let (mut hub, mut out) = hub(3);
        say(&mut hub, 2, "/join elsewhere\n", &mut out);
        out.0.clear();
        hub.announce("* server shutting down", &mut out);
        for id in 0..3 {
            assert_eq!(out.take(id), "* server shutting down\n");
        }
        hub.announce("* again\n", &mut out);
        assert_eq!(out.take(0), "* again\n");
    }

    #[test]
    fn member_and_room_counts() {
        let (mut hub, mut out) = hub(0);
        assert_eq!((hub.members(), hub.rooms()), (0, 1));
        for id in 0..4 {
            hub.connect(id, &mut out);
        }
        say(&mut hub, 0, "/join a\n", &mut out);
        say(&mut hub, 1, "/join b\n", &mut out);
        assert_eq!((hub.members(), hub.rooms()), (4, 3));
        hub.disconnect(1, Leave::Closed, &mut out);
        assert_eq!((hub.members(), hub.rooms()), (3, 2));
        // Reconnecting a live id replaces it silently rather than double-counting.
        hub.connect(0, &mut out);
        assert_eq!((hub.members(), hub.rooms()), (3, 1));
    }

    #[test]
    fn swap_remove_fixes_the_moved_members_slot() {
        let (mut hub, mut out) = hub(5);
        hub.disconnect(2, Leave::Closed, &mut out);
        out.0.clear();
        // Member 4 was moved into slot 2: it must still be found and fanned out to.
        say(&mut hub, 4, "moved\n", &mut out);
        assert_eq!(out.recipients(), vec![0, 1, 3]);
        hub.disconnect(4, Leave::Closed, &mut out);
        out.0.clear();
        say(&mut hub, 0, "left\n", &mut out);
        assert_eq!(out.recipients(), vec![1, 3]);
        assert_eq!(out.take(1), "[lobby] guest0: left\n");
        out.0.clear();
        say(&mut hub, 3, "/who\n", &mut out);
        assert_eq!(out.take(3), "* lobby: guest0, guest1, guest3\n");
    }

    #[test]
    fn idle_member_stays_small() {
        // room + slot, plus the Option's tag: 12 bytes per member slot.
        assert!(size_of::<Option<Member>>() <= 12);
    }

    /// An outbox with other servers behind it: records what the hub tells
    /// them, and answers questions as `asked` says.
    struct Shared {
        sink: Sink,
        told: Vec<String>,
        asked: Asked,
    }

    impl Shared {
        fn new(asked: Asked) -> Shared {
            Shared {
                sink: Sink::default(),
                told: Vec::new(),
                asked,
            }
        }

        fn told(&mut self) -> Vec<String> {
            std::mem::take(&mut self.told)
        }
    }

    impl Outbox for Shared {
        fn send(&mut self, to: usize, bytes: &[u8]) {
            self.sink.send(to, bytes);
        }
        fn shared(&self) -> bool {
            true
        }
        fn publish(&mut self, room: &str, _line: &[u8]) {
            self.told.push(format!("publish {room}"));
        }
        fn has_peers(&self) -> bool {
            true
        }
        fn subscribe(&mut self, room: &str) {
            self.told.push(format!("subscribe {room}"));
        }
        fn unsubscribe(&mut self, room: &str) {
            self.told.push(format!("unsubscribe {room}"));
        }
        fn present(&mut self, room: &str, nick: &str) {
            self.told.push(format!("present {room} {nick}"));
        }
        fn absent(&mut self, room: &str, nick: &str) {
            self.told.push(format!("absent {room} {nick}"));
        }
        fn renamed(&mut self, room: &str, old: &str, new: &str) {
            self.told.push(format!("renamed {room} {old} {new}"));
        }
        fn release(&mut self, nick: &str) {
            self.told.push(format!("release {nick}"));
        }
        fn gone(&mut self, id: usize) {
            self.told.push(format!("gone {id}"));
        }
        fn ask(&mut self, id: usize, ask: Ask<'_>) -> Asked {
            self.told.push(format!("ask {id} {ask:?}"));
            self.asked
        }
    }

    fn shared_hub(asked: Asked) -> (ChatHub, Shared) {
        let mut hub = ChatHub::new(64);
        hub.set_guests(Guests {
            stride: 1,
            tag: 0,
            server: Some(0xabc),
        });
        (hub, Shared::new(asked))
    }

    #[test]
    fn the_other_servers_hear_who_is_where() {
        let (mut hub, mut out) = shared_hub(Asked::Sent);
        hub.connect(0, &mut out);
        hub.connect(1, &mut out);
        assert_eq!(
            out.told(),
            [
                "subscribe lobby",
                "present lobby guest0-000abc",
                // Joins are told to members elsewhere, even when alone here.
                "publish lobby",
                "present lobby guest1-000abc",
                "publish lobby",
            ]
        );
        assert!(out.sink.take(0).contains("you are guest0-000abc in lobby"));
        say(&mut hub, 0, "/join attic\n", &mut out);
        assert_eq!(
            out.told(),
            [
                "publish lobby",
                "absent lobby guest0-000abc",
                "subscribe attic",
                "present attic guest0-000abc",
                "publish attic",
            ]
        );
        hub.disconnect(1, Leave::Closed, &mut out);
        assert_eq!(
            out.told(),
            [
                "publish lobby",
                "absent lobby guest1-000abc",
                "unsubscribe lobby",
                "gone 1"
            ]
        );
    }

    #[test]
    fn a_nick_is_reserved_here_and_taken_once_the_others_agree() {
        let (mut hub, mut out) = shared_hub(Asked::Sent);
        for id in 0..3 {
            hub.connect(id, &mut out);
        }
        out.told();
        out.sink.0.clear();
        say(&mut hub, 0, "/nick ann\n", &mut out);
        assert_eq!(out.told(), ["ask 0 Nick(\"ann\")"]);
        assert_eq!(out.sink.take(0), "", "no answer before the other servers'");
        // Reserved: another member here cannot take it meanwhile.
        say(&mut hub, 1, "/nick ann\n", &mut out);
        assert_eq!(out.sink.take(1), "ERROR nick ann is taken\n");
        say(&mut hub, 0, "/nick bob\n", &mut out);
        assert_eq!(
            out.sink.take(0),
            "ERROR a nick change is already under way\n"
        );
        out.told();
        hub.nick_answer(0, "ann", true, &mut out);
        assert_eq!(out.sink.take(0), "* you are now ann\n");
        assert_eq!(out.sink.take(2), "* guest0-000abc is now ann\n");
        out.sink.take(1);
        assert_eq!(
            out.told(),
            ["publish lobby", "renamed lobby guest0-000abc ann"]
        );
        // Refused elsewhere: the reservation goes.
        say(&mut hub, 1, "/nick cid\n", &mut out);
        hub.nick_answer(1, "cid", false, &mut out);
        assert_eq!(out.sink.take(1), "ERROR nick cid is taken\n");
        say(&mut hub, 2, "/nick cid\n", &mut out);
        assert_eq!(out.told().last().unwrap(), "ask 2 Nick(\"cid\")");
        // Granted for a member that has gone: let go again.
        hub.disconnect(2, Leave::Closed, &mut out);
        out.told();
        hub.nick_answer(2, "cid", true, &mut out);
        assert_eq!(out.told(), ["release cid"]);
        // A member leaving lets its nick go.
        hub.disconnect(0, Leave::Closed, &mut out);
        assert!(out.told().contains(&"release ann".to_string()));
    }

    #[test]
    fn with_the_others_out_of_reach_nicks_stay_and_lists_say_so() {
        let (mut hub, mut out) = shared_hub(Asked::Unreachable);
        hub.connect(0, &mut out);
        hub.connect(1, &mut out);
        out.sink.0.clear();
        say(&mut hub, 0, "/nick ann\n", &mut out);
        assert_eq!(
            out.sink.take(0),
            "ERROR nicks cannot change while the other servers are out of reach; you are still guest0-000abc\n"
        );
        say(&mut hub, 0, "/who\n", &mut out);
        assert_eq!(
            out.sink.take(0),
            "* lobby: guest0-000abc, guest1-000abc (this server only: the other servers are out of reach)\n"
        );
        say(&mut hub, 0, "/rooms\n", &mut out);
        assert_eq!(
            out.sink.take(0),
            "* rooms: lobby (2) (this server only: the other servers are out of reach)\n"
        );
        // Back to its own default needs nobody's leave.
        say(&mut hub, 1, "/nick guest1-000abc\n", &mut out);
        assert_eq!(out.sink.take(1), "* you are now guest1-000abc\n");
    }

    #[test]
    fn answers_from_the_other_servers_are_formatted_like_local_ones() {
        let (mut hub, mut out) = shared_hub(Asked::Sent);
        hub.connect(0, &mut out);
        out.sink.0.clear();
        say(&mut hub, 0, "/who\n", &mut out);
        say(&mut hub, 0, "/rooms\n", &mut out);
        assert_eq!(out.sink.take(0), "", "both wait for their answers");
        let names: Vec<String> = (0..MAX_LISTED).map(|i| format!("n{i:03}")).collect();
        hub.who_answer(0, "lobby", &names, 250, &mut out);
        let who = out.sink.take(0);
        assert!(who.starts_with("* lobby: n000, n001, "), "{who}");
        assert!(who.ends_with("n099, and 150 more\n"), "{who}");
        let rooms = vec![("attic".to_string(), 3), ("lobby".to_string(), 1)];
        hub.rooms_answer(0, &rooms, 2, &mut out);
        assert_eq!(out.sink.take(0), "* rooms: attic (3), lobby (1)\n");
        hub.no_answer(0, &mut out);
        assert!(
            out.sink
                .take(0)
                .starts_with("ERROR the other servers went out of reach")
        );
        // Answers for a member that has gone go nowhere.
        hub.disconnect(0, Leave::Closed, &mut out);
        out.sink.0.clear();
        hub.who_answer(0, "lobby", &names, 250, &mut out);
        assert!(out.sink.0.is_empty());
    }

    #[test]
    fn a_nick_taken_elsewhere_while_apart_is_given_up() {
        let (mut hub, mut out) = shared_hub(Asked::Sent);
        hub.connect(0, &mut out);
        hub.connect(1, &mut out);
        say(&mut hub, 0, "/nick ann\n", &mut out);
        hub.nick_answer(0, "ann", true, &mut out);
        out.sink.0.clear();
        out.told();
        let mut roster = Vec::new();
        hub.roster(|id, room, nick, custom| roster.push(format!("{id} {room} {nick} {custom}")));
        assert_eq!(roster, ["0 lobby ann true", "1 lobby guest1-000abc false"]);
        hub.nick_lost(0, "ann", &mut out);
        assert_eq!(
            out.sink.take(0),
            "* your nick ann was taken on another server while the servers were apart; you are guest0-000abc again\n"
        );
        assert_eq!(out.sink.take(1), "* ann is now guest0-000abc\n");
        assert_eq!(
            out.told(),
            ["publish lobby", "renamed lobby ann guest0-000abc"]
        );
        // The nick is free here again.
        say(&mut hub, 1, "/nick ann\n", &mut out);
        assert_eq!(out.told(), ["ask 1 Nick(\"ann\")"]);
    }
}
