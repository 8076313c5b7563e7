//! In a crate that depends on serde and schemars itself: the prelude's derives give the same JSON
//! and the same JSON Schemas as serde's and schemars' own, and the two mix.

macro_rules! types {
    () => {
        /// A question.
        #[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct Question {
            /// What was asked
            pub question_text: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub asked_by: Option<String>,
            #[schemars(range(max = 9))]
            pub urgency: u8,
        }

        /// Where a question goes.
        #[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum Route {
            /// Answer it.
            Answer { topic: String },
            Escalate,
        }

        /// A page.
        #[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
        pub struct Page<T> {
            /// The items
            pub items: Vec<T>,
            pub first: Option<Question>,
        }
    };
}

mod with_flock {
    use flock::prelude::*;
    types!();
}

mod with_serde {
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};
    types!();
}

/// serde's derive over a field whose type has flock's.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Mixed {
    page: with_flock::Page<with_flock::Route>,
}

fn main() {
    assert_eq!(
        schemars::schema_for!(with_flock::Page<with_flock::Route>),
        schemars::schema_for!(with_serde::Page<with_serde::Route>)
    );

    let json = r#"{"items":[{"kind":"answer","topic":"Temporal"},{"kind":"escalate"}],"first":{"questionText":"Why?","urgency":3}}"#;
    let flock: with_flock::Page<with_flock::Route> = serde_json::from_str(json).unwrap();
    let serde: with_serde::Page<with_serde::Route> = serde_json::from_str(json).unwrap();
    assert_eq!(serde_json::to_string(&flock).unwrap(), json);
    assert_eq!(serde_json::to_string(&serde).unwrap(), json);
    assert_eq!(flock.items[0], with_flock::Route::Answer { topic: "Temporal".into() });

    let mixed: Mixed = serde_json::from_str(&format!(r#"{{"page":{json}}}"#)).unwrap();
    assert_eq!(mixed.page, flock);
    let schema = schemars::schema_for!(Mixed);
    assert_eq!(schema.as_value()["$defs"]["Page"]["properties"]["items"]["description"], "The items");
}
