//! The game's messages, byte by byte: the same over UDP (one message per
//! datagram) and over WebSocket (one per binary frame). Integers are
//! little-endian. `docs/GAME.md` draws the layouts.
//!
//! Client to server: HELLO, JOIN (UDP only), INPUT, BYE.
//! Server to client: COOKIE (UDP only), WELCOME, SNAPSHOT, REJECT.

/// The protocol version, second byte of HELLO, JOIN, COOKIE and WELCOME.
pub const VERSION: u8 = 1;

/// HELLO: `[0x01][version]`, zero-padded to `HELLO_LEN`.
pub const HELLO: u8 = 0x01;
/// COOKIE: `[0x02][version][cookie u64]`.
pub const COOKIE: u8 = 0x02;
/// JOIN: `[0x03][version][cookie u64]`, zero-padded to `HELLO_LEN`.
pub const JOIN: u8 = 0x03;
/// WELCOME: `[0x04][version][id u16][token u32][hz u8][step u16]
/// [width u16][height u16][radius u8][sub u8]`.
pub const WELCOME: u8 = 0x04;
/// INPUT: `[0x05][token u32][ack u32][seq u32][n u8][buttons; n]`.
pub const INPUT: u8 = 0x05;
/// BYE: `[0x06][token u32]`.
pub const BYE: u8 = 0x06;
/// REJECT: `[0x07][reason u8]`.
pub const REJECT: u8 = 0x07;
/// SNAPSHOT: `[0x10][tick u32][base u32][ack_seq u32][you u16]
/// [removed u8][entities u8]`, the removed ids (u16 each), the entities.
pub const SNAPSHOT: u8 = 0x10;

/// HELLO and JOIN are padded to this length, so that no answer to them
/// (COOKIE, WELCOME, REJECT) is longer than what was sent.
pub const HELLO_LEN: usize = 32;
/// COOKIE's length.
pub const COOKIE_LEN: usize = 10;
/// WELCOME's length.
pub const WELCOME_LEN: usize = 17;
/// REJECT's length.
pub const REJECT_LEN: usize = 2;
/// SNAPSHOT's fixed header.
pub const SNAPSHOT_HEAD: usize = 17;
/// INPUT's length without its buttons.
pub const INPUT_HEAD: usize = 14;
/// Most inputs one INPUT carries (the newest and the ones before it, so a
/// lost datagram's inputs arrive with the next).
pub const MAX_REDUNDANT: usize = 8;
/// The largest datagram the server sends: a snapshot stays under this,
/// which fits any path MTU of 1280 bytes (IPv6's minimum) after the IP
/// and UDP headers (48 bytes over IPv6).
pub const MTU_BUDGET: usize = 1200;
/// An entity in a full snapshot: id, x, y, flags, score.
pub const FULL_ENTITY: usize = 9;

/// REJECT reasons.
pub mod reason {
    /// The arena has `--game-max-players` already.
    pub const FULL: u8 = 1;
    /// The version byte is not ours.
    pub const VERSION: u8 = 2;
}

/// Buttons of an input.
pub mod button {
    /// Move up (y decreases).
    pub const UP: u8 = 1;
    /// Move down.
    pub const DOWN: u8 = 2;
    /// Move left (x decreases).
    pub const LEFT: u8 = 4;
    /// Move right.
    pub const RIGHT: u8 = 8;
    /// Every button there is.
    pub const ALL: u8 = 15;
}

/// Flags of an entity.
pub mod flag {
    /// This player is "it": touching another player tags them.
    pub const IT: u8 = 1;
    /// Just tagged: cannot move (or be tagged) for a second.
    pub const FROZEN: u8 = 2;
}

/// Fields present in a delta entity (its mask byte).
pub mod field {
    /// `dx i8, dy i8`: a small move.
    pub const NUDGE: u8 = 1;
    /// `x u16, y u16`: a position.
    pub const POS: u8 = 2;
    /// `flags u8`.
    pub const FLAGS: u8 = 4;
    /// `score u16`.
    pub const SCORE: u8 = 8;
}

/// One player as a snapshot shows it. Positions are in sub-units
/// (`SUB` per arena unit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ent {
    /// The player's id.
    pub id: u16,
    /// Position, sub-units.
    pub x: u16,
    /// Position, sub-units.
    pub y: u16,
    /// `flag::IT`, `flag::FROZEN`.
    pub flags: u8,
    /// Tags made.
    pub score: u16,
}

/// A SNAPSHOT's header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapHead {
    /// The server tick it shows.
    pub tick: u32,
    /// The tick it is a delta against (0: a full snapshot).
    pub base: u32,
    /// The newest input of the receiver's that the server has applied.
    pub ack_seq: u32,
    /// The receiver's own id.
    pub you: u16,
}

/// What a client sent, parsed (without copying).
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    /// Asks for a cookie.
    Hello {
        /// Its version byte.
        version: u8,
    },
    /// Joins with a cookie.
    Join {
        /// Its version byte.
        version: u8,
        /// The cookie.
        cookie: u64,
    },
    /// Inputs and an ack.
    Input {
        /// The session token from WELCOME.
        token: u32,
        /// The newest snapshot tick received.
        ack: u32,
        /// The sequence number of `buttons[0]`; `buttons[i]` is `seq - i`.
        seq: u32,
        /// Newest first.
        buttons: &'a [u8],
    },
    /// Leaves.
    Bye {
        /// The session token.
        token: u32,
    },
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default())
}

/// Parses a client's message; `None` when malformed (a wrong length, an
/// unknown type, too many inputs, a sequence number of 0).
pub fn parse(b: &[u8]) -> Option<Msg<'_>> {
    match *b.first()? {
        HELLO if b.len() >= HELLO_LEN => Some(Msg::Hello { version: b[1] }),
        JOIN if b.len() >= HELLO_LEN => Some(Msg::Join {
            version: b[1],
            cookie: u64_at(b, 2),
        }),
        INPUT if b.len() > INPUT_HEAD => {
            let n = b[13] as usize;
            let seq = u32_at(b, 9);
            let buttons = &b[INPUT_HEAD..];
            let ok = (1..=MAX_REDUNDANT).contains(&n)
                && buttons.len() == n
                && seq as usize >= n
                && buttons.iter().all(|&x| x & !button::ALL == 0);
            ok.then_some(Msg::Input {
                token: u32_at(b, 1),
                ack: u32_at(b, 5),
                seq,
                buttons,
            })
        }
        BYE if b.len() == 5 => Some(Msg::Bye {
            token: u32_at(b, 1),
        }),
        _ => None,
    }
}

/// Appends a HELLO.
pub fn hello(out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[HELLO, VERSION]);
    out.resize(start + HELLO_LEN, 0);
}

/// Appends a JOIN with `cookie`.
pub fn join(cookie: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[JOIN, VERSION]);
    out.extend_from_slice(&cookie.to_le_bytes());
    out.resize(start + HELLO_LEN, 0);
}

/// Appends an INPUT: `buttons` newest first, `buttons[0]` being `seq`.
pub fn input(token: u32, ack: u32, seq: u32, buttons: &[u8], out: &mut Vec<u8>) {
    out.push(INPUT);
    out.extend_from_slice(&token.to_le_bytes());
    out.extend_from_slice(&ack.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(buttons.len() as u8);
    out.extend_from_slice(buttons);
}

/// Appends a BYE.
pub fn bye(token: u32, out: &mut Vec<u8>) {
    out.push(BYE);
    out.extend_from_slice(&token.to_le_bytes());
}

/// Appends a COOKIE.
pub fn cookie(cookie: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&[COOKIE, VERSION]);
    out.extend_from_slice(&cookie.to_le_bytes());
}

/// Appends a REJECT.
pub fn reject(why: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&[REJECT, why]);
}

/// What WELCOME tells a client about the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// Its player id.
    pub id: u16,
    /// Its session token (0 over WebSocket, where it is not needed).
    pub token: u32,
    /// Ticks per second.
    pub hz: u8,
    /// Sub-units a player moves per tick along one axis.
    pub step: u16,
    /// Arena width, units.
    pub width: u16,
    /// Arena height, units.
    pub height: u16,
    /// Player radius, units.
    pub radius: u8,
    /// Sub-units per unit.
    pub sub: u8,
}

/// Appends a WELCOME.
pub fn welcome(w: &Welcome, out: &mut Vec<u8>) {
    out.extend_from_slice(&[WELCOME, VERSION]);
    out.extend_from_slice(&w.id.to_le_bytes());
    out.extend_from_slice(&w.token.to_le_bytes());
    out.push(w.hz);
    out.extend_from_slice(&w.step.to_le_bytes());
    out.extend_from_slice(&w.width.to_le_bytes());
    out.extend_from_slice(&w.height.to_le_bytes());
    out.push(w.radius);
    out.push(w.sub);
}

/// Reads a WELCOME.
pub fn parse_welcome(b: &[u8]) -> Option<Welcome> {
    (b.len() == WELCOME_LEN && b[0] == WELCOME && b[1] == VERSION).then(|| Welcome {
        id: u16_at(b, 2),
        token: u32_at(b, 4),
        hz: b[8],
        step: u16_at(b, 9),
        width: u16_at(b, 11),
        height: u16_at(b, 13),
        radius: b[15],
        sub: b[16],
    })
}

/// Appends a snapshot's header.
pub fn snap_head(h: &SnapHead, removed: u8, ents: u8, out: &mut Vec<u8>) {
    out.push(SNAPSHOT);
    out.extend_from_slice(&h.tick.to_le_bytes());
    out.extend_from_slice(&h.base.to_le_bytes());
    out.extend_from_slice(&h.ack_seq.to_le_bytes());
    out.extend_from_slice(&h.you.to_le_bytes());
    out.push(removed);
    out.push(ents);
}

/// Appends `ents` as a full snapshot's body (its counts go in the header:
/// 0 removed, `ents.len()` entities).
pub fn full_body(ents: &[Ent], out: &mut Vec<u8>) {
    for e in ents {
        out.extend_from_slice(&e.id.to_le_bytes());
        out.extend_from_slice(&e.x.to_le_bytes());
        out.extend_from_slice(&e.y.to_le_bytes());
        out.push(e.flags);
        out.extend_from_slice(&e.score.to_le_bytes());
    }
}

/// Appends the delta from `base` to `now` (both sorted by id): the ids
/// gone, then each entity new or changed, with a mask of the fields that
/// changed. Returns (removed, changed) for the header; `None` if either
/// count is over 255 (send a full snapshot then).
pub fn delta_body(base: &[Ent], now: &[Ent], out: &mut Vec<u8>) -> Option<(u8, u8)> {
    let start = out.len();
    // Removed: in base, not in now (a merge of two sorted lists).
    let mut removed = 0usize;
    let mut j = 0;
    for b in base {
        while j < now.len() && now[j].id < b.id {
            j += 1;
        }
        if j >= now.len() || now[j].id != b.id {
            out.extend_from_slice(&b.id.to_le_bytes());
            removed += 1;
        }
    }
    let mut changed = 0usize;
    let mut i = 0;
    for e in now {
        while i < base.len() && base[i].id < e.id {
            i += 1;
        }
        let old = (i < base.len() && base[i].id == e.id).then(|| base[i]);
        let mask_at = out.len();
        let mut mask = 0u8;
        out.extend_from_slice(&e.id.to_le_bytes());
        out.push(0);
        match old {
            Some(o) => {
                if (o.x, o.y) != (e.x, e.y) {
                    let dx = i32::from(e.x) - i32::from(o.x);
                    let dy = i32::from(e.y) - i32::from(o.y);
                    if let (Ok(dx), Ok(dy)) = (i8::try_from(dx), i8::try_from(dy)) {
                        mask |= field::NUDGE;
                        out.extend_from_slice(&[dx as u8, dy as u8]);
                    } else {
                        mask |= field::POS;
                        out.extend_from_slice(&e.x.to_le_bytes());
                        out.extend_from_slice(&e.y.to_le_bytes());
                    }
                }
                if o.flags != e.flags {
                    mask |= field::FLAGS;
                    out.push(e.flags);
                }
                if o.score != e.score {
                    mask |= field::SCORE;
                    out.extend_from_slice(&e.score.to_le_bytes());
                }
            }
            None => {
                mask = field::POS | field::FLAGS | field::SCORE;
                out.extend_from_slice(&e.x.to_le_bytes());
                out.extend_from_slice(&e.y.to_le_bytes());
                out.push(e.flags);
                out.extend_from_slice(&e.score.to_le_bytes());
            }
        }
        if mask == 0 {
            out.truncate(mask_at); // unchanged: not sent
        } else {
            out[mask_at + 2] = mask;
            changed += 1;
        }
    }
    if removed > 255 || changed > 255 {
        out.truncate(start);
        return None;
    }
    Some((removed as u8, changed as u8))
}

/// Why a snapshot could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapError {
    /// Not a well-formed SNAPSHOT.
    Malformed,
    /// A delta against a tick the reader no longer has.
    NoBase(u32),
}

/// Reads a SNAPSHOT: its header and the entities it shows (sorted by id),
/// applying a delta to `base` (the reader's copy of tick `head.base`,
/// looked up by `find`).
pub fn parse_snapshot<'b>(
    b: &[u8],
    find: impl FnOnce(u32) -> Option<&'b [Ent]>,
) -> Result<(SnapHead, Vec<Ent>), SnapError> {
    if b.len() < SNAPSHOT_HEAD || b[0] != SNAPSHOT {
        return Err(SnapError::Malformed);
    }
    let head = SnapHead {
        tick: u32_at(b, 1),
        base: u32_at(b, 5),
        ack_seq: u32_at(b, 9),
        you: u16_at(b, 13),
    };
    let (removed, n) = (b[15] as usize, b[16] as usize);
    let mut at = SNAPSHOT_HEAD;
    let need = |at: usize, k: usize| {
        if at + k <= b.len() {
            Ok(())
        } else {
            Err(SnapError::Malformed)
        }
    };
    if head.base == 0 {
        let mut ents = Vec::with_capacity(n);
        need(at, n * FULL_ENTITY)?;
        for _ in 0..n {
            ents.push(Ent {
                id: u16_at(b, at),
                x: u16_at(b, at + 2),
                y: u16_at(b, at + 4),
                flags: b[at + 6],
                score: u16_at(b, at + 7),
            });
            at += FULL_ENTITY;
        }
        return if at == b.len() {
            Ok((head, ents))
        } else {
            Err(SnapError::Malformed)
        };
    }
    let base = find(head.base).ok_or(SnapError::NoBase(head.base))?;
    let mut ents: Vec<Ent> = base.to_vec();
    need(at, removed * 2)?;
    for _ in 0..removed {
        let id = u16_at(b, at);
        ents.retain(|e| e.id != id);
        at += 2;
    }
    for _ in 0..n {
        need(at, 3)?;
        let (id, mask) = (u16_at(b, at), b[at + 2]);
        at += 3;
        let pos = match ents.binary_search_by_key(&id, |e| e.id) {
            Ok(p) => p,
            Err(p) => {
                ents.insert(
                    p,
                    Ent {
                        id,
                        ..Ent::default()
                    },
                );
                p
            }
        };
        let e = &mut ents[pos];
        if mask & field::NUDGE != 0 {
            need(at, 2)?;
            e.x = (i32::from(e.x) + i32::from(b[at] as i8)) as u16;
            e.y = (i32::from(e.y) + i32::from(b[at + 1] as i8)) as u16;
            at += 2;
        }
        if mask & field::POS != 0 {
            need(at, 4)?;
            e.x = u16_at(b, at);
            e.y = u16_at(b, at + 2);
            at += 4;
        }
        if mask & field::FLAGS != 0 {
            need(at, 1)?;
            e.flags = b[at];
            at += 1;
        }
        if mask & field::SCORE != 0 {
            need(at, 2)?;
            e.score = u16_at(b, at);
            at += 2;
        }
    }
    if at == b.len() {
        Ok((head, ents))
    } else {
        Err(SnapError::Malformed)
    }
}
