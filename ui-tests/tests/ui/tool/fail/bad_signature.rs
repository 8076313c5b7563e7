use flock::prelude::*;

#[derive(Deserialize, JsonSchema)]
pub struct Query {
    pub q: String,
}

#[tool]
async fn no_args() -> String {
    String::new()
}

#[tool(nam = "x")]
fn two_args(a: Query, b: Query) -> String {
    a.q + &b.q
}

fn main() {}
