//! Tools: plain and fallible returns, renamed, used by a declarative agent; their schema, name,
//! description and JSON calls.

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
        let bad = search.call_json(json!({ "query": 1 })).await.unwrap_err();
        assert!(bad.starts_with("the arguments of tool `search` do not match its schema"), "{bad}");
    });
}
