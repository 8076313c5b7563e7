use flock::prelude::*;

#[derive(Deserialize, JsonSchema)]
pub struct Query {
    pub q: String,
}

/// Serializable: before the check this compiled, and an `Err` went to the model as the tool's
/// successful answer.
type Lookup = Result<String, String>;

#[tool]
async fn search(args: Query) -> Lookup {
    if args.q.is_empty() {
        return Err("empty query".to_owned());
    }
    Ok(args.q)
}

fn main() {}
