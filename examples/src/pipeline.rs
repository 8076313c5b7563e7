//! Flock without LLMs: code agents in a flow that routes on a typed enum and fans out in
//! parallel, over a batch of tickets handled as child flows.

use flock::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Ticket {
    /// Ticket number
    pub id: u32,
    /// What the customer wrote
    pub text: String,
}

/// Where a ticket goes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Something is broken
    Bug,
    /// Money questions
    Billing,
    /// Everything else
    Question,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Triage {
    /// The ticket
    pub ticket: Ticket,
    /// Where it goes
    pub route: Route,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Owner {
    /// The team that owns the fix
    pub team: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Estimate {
    /// Hours of work
    pub hours: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Resolution {
    /// Ticket number
    pub id: u32,
    /// The route taken
    pub route: Route,
    /// What happens next
    pub action: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Tickets {
    /// The batch
    pub tickets: Vec<Ticket>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Resolutions {
    /// One per ticket, in order
    pub resolutions: Vec<Resolution>,
}

/// Routes a ticket by its words.
#[agent(timeout = "5s")]
pub async fn classify(input: Ticket) -> Triage {
    let text = input.text.to_lowercase();
    let route = if ["crash", "error", "broken"]
        .iter()
        .any(|w| text.contains(w))
    {
        Route::Bug
    } else if ["refund", "invoice", "charge"]
        .iter()
        .any(|w| text.contains(w))
    {
        Route::Billing
    } else {
        Route::Question
    };
    Triage {
        ticket: input,
        route,
    }
}

/// Finds the team that owns a bug.
#[agent]
pub async fn find_owner(input: Triage) -> Owner {
    let team = if input.ticket.text.contains("login") {
        "identity"
    } else {
        "core"
    };
    Owner {
        team: team.to_owned(),
    }
}

/// Estimates the work on a bug.
#[agent]
pub async fn estimate(input: Triage) -> Estimate {
    Estimate {
        hours: 1 + input.ticket.text.split_whitespace().count() as u32 / 2,
    }
}

/// Checks a billing ticket.
#[agent]
pub async fn check_billing(input: Triage) -> Result<Resolution, AgentError> {
    if input.ticket.text.is_empty() {
        return Err(AgentError::invalid_input("empty billing ticket"));
    }
    Ok(Resolution {
        id: input.ticket.id,
        route: Route::Billing,
        action: "refund reviewed by billing".to_owned(),
    })
}

/// Answers a question.
#[agent]
pub async fn answer(input: Triage) -> Resolution {
    Resolution {
        id: input.ticket.id,
        route: Route::Question,
        action: format!("answered: {}", input.ticket.text),
    }
}

/// One ticket: classify, then route; bugs fan out to two agents in parallel.
#[flow]
pub async fn handle_ticket(ctx: &FlowContext, ticket: Ticket) -> Result<Resolution, FlowError> {
    let triage = ctx.call(classify, ticket).await?;
    match triage.route {
        Route::Bug => {
            let (owner, work) = flock::try_join!(
                ctx.call(find_owner, triage.clone()),
                ctx.call(estimate, triage.clone())
            )?;
            Ok(Resolution {
                id: triage.ticket.id,
                route: Route::Bug,
                action: format!("assigned to {} ({}h)", owner.team, work.hours),
            })
        }
        Route::Billing => ctx.call(check_billing, triage).await,
        Route::Question => ctx.call(answer, triage).await,
    }
}

/// A batch: every ticket as a child flow, all in parallel.
#[flow]
pub async fn handle_batch(ctx: &FlowContext, batch: Tickets) -> Result<Resolutions, FlowError> {
    let children = batch
        .tickets
        .into_iter()
        .map(|t| ctx.call_flow(handle_ticket, t));
    let resolutions = flock::try_join_all(children).await?;
    Ok(Resolutions { resolutions })
}

/// The batch the example (and the conformance tests) run.
pub fn sample_batch() -> Tickets {
    let texts = [
        "The app shows an error after login",
        "Please refund the double charge on my invoice",
        "How do I export my data?",
    ];
    Tickets {
        tickets: texts
            .iter()
            .enumerate()
            .map(|(i, text)| Ticket {
                id: i as u32 + 1,
                text: (*text).to_owned(),
            })
            .collect(),
    }
}
