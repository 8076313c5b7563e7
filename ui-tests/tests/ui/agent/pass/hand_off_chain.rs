//! A hand-off chain of three agents whose types differ and convert with `From`; running the first
//! agent runs the chain, and its result type is the last agent's output.

use flock::prelude::*;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Raw {
    pub text: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Cleaned {
    pub text: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Words {
    pub words: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct WordList {
    pub words: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Count {
    pub count: u64,
}

impl From<Cleaned> for Raw {
    fn from(cleaned: Cleaned) -> Self {
        Raw { text: cleaned.text }
    }
}

impl From<Words> for WordList {
    fn from(words: Words) -> Self {
        WordList { words: words.words }
    }
}

/// Trims and lowercases.
#[agent(hand_off = split)]
async fn clean(input: Raw) -> Cleaned {
    Cleaned { text: input.text.trim().to_lowercase() }
}

/// Splits into words (its input is `Raw`: `Cleaned` converts into it).
#[agent(hand_off = count)]
async fn split(input: Raw) -> Words {
    Words { words: input.text.split_whitespace().map(str::to_owned).collect() }
}

/// Counts (its input is `WordList`: `Words` converts into it).
#[agent]
async fn count(input: WordList) -> Count {
    Count { count: input.words.len() as u64 }
}

fn main() {
    assert_eq!(clean.spec().hand_off, Some("split"));
    assert_eq!(split.spec().hand_off, Some("count"));
    assert_eq!(count.spec().hand_off, None);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let flock = Flock::builder().model("test").local_debug(true).build().await.unwrap();
        let recorded = flock.run(clean, Raw { text: "  Three Little Words ".into() }).recorded().await;
        let total: Count = recorded.result.unwrap();
        assert_eq!(total, Count { count: 3 });
        assert_eq!(recorded.record.name, "clean.chain");
        let steps: Vec<_> = recorded.record.steps.iter().map(|s| s.agent.as_str()).collect();
        assert_eq!(steps, ["clean", "split", "count"]);
    });
}
