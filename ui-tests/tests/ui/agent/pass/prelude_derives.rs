//! Agent I/O types derived with the prelude's `Serialize`, `Deserialize` and `JsonSchema` alone:
//! serde's and schemars' attributes, doc comments, enums, generics, a recursive type, private
//! fields, another derive's helper attribute, a type inside a fn. Nothing here names serde or
//! schemars. (This crate has serde and schemars dev-dependencies; the integration test
//! `fresh_crate` builds this file in a crate that has neither.)

use flock::prelude::*;

mod types {
    use flock::prelude::*;

    /// A question and where it came from.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Question {
        /// What was asked
        pub question_text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub asked_by: Option<String>,
        /// Private: constructed only through `Question::new`.
        #[schemars(description = "How urgent, 0 to 9")]
        urgency: u8,
    }

    impl Question {
        pub fn new(text: &str, urgency: u8) -> Self {
            Question {
                question_text: text.into(),
                asked_by: None,
                urgency,
            }
        }

        pub fn urgency(&self) -> u8 {
            self.urgency
        }
    }
}

use types::Question;

/// Where a question goes.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Route {
    /// Answer it from the knowledge base.
    Answer { topic: String },
    /// A human takes it.
    #[default]
    Escalate,
}

/// A page of results.
#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    /// The results on this page
    pub items: Vec<T>,
    #[serde(default)]
    pub next: Option<u32>,
}

/// A thread of questions.
#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Thread {
    pub question: Question,
    pub replies: Vec<Thread>,
    pub parent: Option<Box<Self>>,
}

/// A newtype.
#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Score(pub u32);

/// Routes every question of the thread.
#[agent]
async fn route(thread: Thread) -> Page<Route> {
    let mut items = Vec::new();
    let mut next = Some(&thread);
    while let Some(thread) = next {
        items.push(if thread.question.urgency() > 5 {
            Route::Escalate
        } else {
            Route::Answer {
                topic: thread.question.question_text.clone(),
            }
        });
        next = thread.replies.first();
    }
    items.push(Route::default());
    Page { items, next: None }
}

/// Scores a page.
#[agent]
async fn score(page: Page<Route>) -> Score {
    Score(page.items.len() as u32)
}

#[tokio::main]
async fn main() {
    // A type defined in a fn body.
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Local {
        /// A local field
        field: bool,
    }
    let local = flock::model::OutputFormat::of::<Local>();
    assert_eq!(local.schema["properties"]["field"]["description"], "A local field");
    let _: Local = local.parse_answer(r#"{"field": true}"#).unwrap();

    // Doc comments and `#[schemars]` attributes are descriptions; serde's attributes shape the
    // schema.
    let input = route.input_schema();
    let input = input.as_value();
    assert_eq!(input["title"], "Thread");
    assert_eq!(input["description"], "A thread of questions.");
    let question = &input["$defs"]["Question"];
    assert_eq!(question["description"], "A question and where it came from.");
    assert_eq!(question["properties"]["questionText"]["description"], "What was asked");
    assert_eq!(question["properties"]["urgency"]["description"], "How urgent, 0 to 9");
    assert_eq!(question["additionalProperties"], false);
    let output = route.output_schema();
    assert_eq!(output.as_value()["title"], "Page");
    assert_eq!(
        output.as_value()["$defs"]["Route"]["oneOf"][0]["description"],
        "Answer it from the knowledge base."
    );

    // Values cross the executor as JSON: serialized and deserialized by the derived impls.
    let flock = Flock::builder().model("test").build().await.unwrap();
    let thread = Thread {
        question: Question::new("What is Temporal?", 1),
        replies: vec![Thread {
            question: Question::new("Now!", 9),
            replies: Vec::new(),
            parent: None,
        }],
        parent: None,
    };
    let run = flock.run(route, thread).recorded().await;
    let page = run.result.unwrap();
    assert_eq!(
        page.items,
        [
            Route::Answer {
                topic: "What is Temporal?".into()
            },
            Route::Escalate,
            Route::Escalate
        ]
    );
    let step = &run.record.steps[0];
    assert_eq!(step.input["question"]["questionText"], "What is Temporal?");
    assert!(step.input["question"].get("askedBy").is_none());
    assert_eq!(step.output.as_ref().unwrap()["items"][1]["kind"], "escalate");

    assert_eq!(
        flock
            .run(
                score,
                Page {
                    items: vec![Route::Escalate],
                    next: Some(2)
                }
            )
            .await
            .unwrap(),
        Score(1)
    );
}
