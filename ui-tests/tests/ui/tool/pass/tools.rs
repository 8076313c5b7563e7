//! Tools: plain and fallible returns (also behind a module's `Result` alias, and a plain answer
//! behind an alias), renamed, used by a declarative agent; their schema, name, description and
//! JSON calls.

use flock::prelude::*;
use flock::tool::DynTool;
use serde_json::json;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Query {
    /// What to look up
    pub q: String,
}

#[derive(Debug, Serialize)]
pub struct Page {
    pub url: String,
    pub words: usize,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

/// Searches the web.
#[tool]
async fn search(args: Query) -> Vec<String> {
    vec![format!("https://example.com/{}", args.q)]
}

/// Fetches a page.
#[tool(name = "fetch-page", description = "Fetches one page.")]
async fn fetch_page(args: Query) -> Result<Page, String> {
    if args.q.is_empty() {
        return Err("empty url".to_owned());
    }
    Ok(Page { url: args.q.clone(), words: args.q.len() })
}

/// A module's own `Result<T>`.
mod answer {
    pub type Result<T> = std::result::Result<T, String>;
}

/// A plain answer behind an alias.
type Words = Vec<String>;

/// Counts words.
#[tool]
async fn count(args: Query) -> answer::Result<usize> {
    if args.q.is_empty() {
        return Err("nothing to count".to_owned());
    }
    Ok(args.q.split_whitespace().count())
}

/// Splits into words.
#[tool]
async fn split(args: Query) -> Words {
    args.q.split_whitespace().map(str::to_owned).collect()
}

/// Researches with tools.
#[agent(tools = [search, fetch_page])]
async fn research(input: Topic) -> Topic;

fn main() {
    assert_eq!(search.name(), "search");
    assert_eq!(search.description(), "Searches the web.");
    assert_eq!(fetch_page.name(), "fetch-page");
    assert_eq!(fetch_page.description(), "Fetches one page.");
    let schema = search.parameters_schema();
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["properties"]["q"]["description"], "What to look up");
    assert_eq!(schema["required"], json!(["q"]));
    let names: Vec<_> = research.spec().tools.iter().map(|t| t.name()).collect();
    assert_eq!(names, ["search", "fetch-page"]);
    assert_eq!(format!("{search:?}"), "search");

    tokio::runtime::Runtime::new().unwrap().block_on(async {
        assert_eq!(
            search.call_json(json!({ "q": "rust" })).await,
            Ok(json!(["https://example.com/rust"]))
        );
        assert_eq!(
            fetch_page.call_json(json!({ "q": "abc" })).await,
            Ok(json!({ "url": "abc", "words": 3 }))
        );
        assert_eq!(fetch_page.call_json(json!({ "q": "" })).await, Err("empty url".to_owned()));
        assert_eq!(count.call_json(json!({ "q": "a b" })).await, Ok(json!(2)));
        assert_eq!(count.call_json(json!({ "q": "" })).await, Err("nothing to count".to_owned()));
        assert_eq!(split.call_json(json!({ "q": "a b" })).await, Ok(json!(["a", "b"])));
        let bad = search.call_json(json!({ "query": 1 })).await.unwrap_err();
        assert!(bad.starts_with("the arguments of tool `search` do not match its schema"), "{bad}");
    });
}
