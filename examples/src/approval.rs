//! Human in the loop: a writer agent drafts a post, a reviewer edits it (updates, checked by a
//! validator) and decides (a signal) from another process, the flow publishes; no decision within
//! the deadline (a durable timer) and the draft is shelved. The reviewer can ask where it stands
//! at any time (a query).

use flock::prelude::*;

/// What to write about.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Brief {
    /// The post's topic.
    pub topic: String,
    /// How long the reviewer has, in seconds.
    pub review_seconds: u64,
}

/// A draft of the post.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Draft {
    /// The post's text.
    pub text: String,
}

/// The reviewer's decision.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// Publish it?
    pub approve: bool,
    /// Why.
    pub note: String,
}

/// The reviewer's replacement text.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Edit {
    /// The new text.
    pub text: String,
}

/// Where the review stands.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Review {
    /// `waiting` or `decided`.
    pub stage: String,
    /// The current draft.
    pub draft: String,
    /// How many edits so far.
    pub edits: u32,
}

/// What became of the post.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Published {
    /// Whether it was published.
    pub published: bool,
    /// The final text.
    pub text: String,
    /// The reviewer's note, or why there was none.
    pub note: String,
}

/// Write a short, friendly blog post draft about the topic.
#[agent]
pub async fn write_post(brief: Brief) -> Draft;

/// An edit must say something.
pub fn edit_not_empty(edit: &Edit) -> Result<(), String> {
    if edit.text.trim().is_empty() {
        Err("an edit must not be empty".into())
    } else {
        Ok(())
    }
}

/// Drafts a post and waits for a reviewer's decision (edits allowed meanwhile).
#[flow(
    signals(
        /// The reviewer's decision.
        decision: Decision
    ),
    queries(
        /// Where the review stands.
        review: Review
    ),
    updates(
        /// Replace the draft's text; answered with the new draft.
        edit: Edit -> Draft
    ),
    validate(edit = edit_not_empty)
)]
pub async fn publish(ctx: &FlowContext, brief: Brief) -> Result<Published, FlowError> {
    let mut draft = ctx.call(write_post, brief.clone()).await?;
    let mut edits = 0;
    let review = |stage: &str, draft: &Draft, edits| Review {
        stage: stage.into(),
        draft: draft.text.clone(),
        edits,
    };
    ctx.publish(publish::review, &review("waiting", &draft, edits))?;
    let deadline = Duration::from_secs(brief.review_seconds);
    let decision = loop {
        let decision = ctx.wait(publish::decision).timeout(deadline);
        let edit = Box::pin(ctx.next_update(publish::edit));
        // whichever comes first; the other wait is dropped, having taken nothing
        match flock::select(decision, edit).await {
            flock::Either::Left((decision, _)) => break decision?,
            flock::Either::Right((request, _)) => {
                let request = request?;
                draft.text = request.input().text.clone();
                edits += 1;
                ctx.publish(publish::review, &review("waiting", &draft, edits))?;
                request.reply(&draft)?;
            }
        }
    };
    ctx.publish(publish::review, &review("decided", &draft, edits))?;
    Ok(match decision {
        Some(decision) => Published {
            published: decision.approve,
            text: draft.text,
            note: decision.note,
        },
        None => Published {
            published: false,
            text: draft.text,
            note: format!("no decision within {deadline:?}: shelved"),
        },
    })
}
