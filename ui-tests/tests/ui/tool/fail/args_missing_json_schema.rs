use flock::prelude::*;

/// Lacks `JsonSchema`: the model could not be told how to call the tool.
#[derive(Deserialize)]
pub struct Query {
    pub q: String,
}

/// Searches.
#[tool]
async fn search(args: Query) -> String {
    args.q
}

fn main() {}
