//! The seam between a session and a TCP stack, from `bookend-link` (shared
//! with the other drivers): [`TcpConnection`], which smoltcp's TCP socket
//! implements, and [`Link`], whose [`Link::pump`] moves bytes, FIN/RST and
//! timers between a session and one connection.

pub use bookend_link::{Link, RecvOutcome, TcpConnection, UP_DELAY_UNIT};
