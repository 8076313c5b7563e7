//! `Approved<Args>` behind an alias is not recognized as a tool that waits for approval: the
//! arguments would be deserialized as they are, which `Approved` does not allow, so it does not
//! compile (never a tool that runs without an approval).

use flock::prelude::*;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Transfer {
    pub cents: u64,
}

type Checked = flock::approval::Approved<Transfer>;

/// Sends money.
#[tool]
async fn wire(transfer: Checked) -> u64 {
    transfer.cents
}

fn main() {}
