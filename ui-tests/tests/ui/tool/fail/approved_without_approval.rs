//! A function that demands an approval cannot be called without one: an `Approved` is made only
//! by the agent loop, from a call someone approved.

use flock::approval::Approved;

pub struct Transfer {
    pub cents: u64,
}

fn send_money(transfer: Approved<Transfer>) -> u64 {
    transfer.cents
}

fn main() {
    // the plain arguments are not an approval
    send_money(Transfer { cents: 5 });
}
