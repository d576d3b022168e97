//! Echo: every byte back, in order.
//!
//! Echo has no state of its own: the bytes that arrived are the bytes to
//! send. The reactor therefore hands the filled read buffer itself to the
//! output queue (no copy) when nothing else is queued, and stops reading a
//! client whose pending output reaches `Limits::echo_output_cap`
//! (backpressure: memory stays flat with a client that never reads).
//! After the client's FIN, the reactor sends what is left, then closes.
