//! An `Approved` cannot be forged: its fields are private and it has no constructor.

use flock::approval::{Approved, Decision};

pub struct Transfer {
    pub cents: u64,
}

fn main() {
    let _forged = Approved {
        args: Transfer { cents: 5 },
        decision: Decision::approve("payer/wire/1"),
    };
}
