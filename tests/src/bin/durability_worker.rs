//! A standalone worker process for the durability test: serves every agent and flow linked in,
//! on `FLOCK_TASK_QUEUE` of the server at `TEMPORAL_ADDRESS`, until killed.

use flock::prelude::*;

use flock_tests::durability::{
    chain_step, chain_ten, d_first, d_flow, d_second, d_third, k_six_then_wait, k_ten_steps,
    mcp_planner, mcp_trip, pay_trip, soak_flow, soak_step, trip_flow, trip_payer, trip_planner,
};

#[tokio::main]
async fn main() -> Result<(), flock::Error> {
    let server_url = std::env::var("TEMPORAL_ADDRESS")
        .map_err(|_| flock::Error::Config("TEMPORAL_ADDRESS is not set".into()))?;
    let task_queue = std::env::var("FLOCK_TASK_QUEUE")
        .map_err(|_| flock::Error::Config("FLOCK_TASK_QUEUE is not set".into()))?;
    let mut builder = Flock::builder();
    // FLOCK_MODEL_URL: an OpenAI-protocol server answering the declarative agents
    if let Ok(base_url) = std::env::var("FLOCK_MODEL_URL") {
        builder = builder
            .provider(flock::model::OpenAi::new(flock::model::OpenAiConfig {
                base_url: Some(base_url),
                api_key: Some("sk-durability".into()),
                ..Default::default()
            }))
            .model("openai/gpt-4o-mini");
    }
    // FLOCK_MCP_SERVER: the MCP server `calc` (a stdio command), noting calls in FLOCK_MCP_LEDGER
    if let Ok(command) = std::env::var("FLOCK_MCP_SERVER") {
        let mut server = flock::mcp::McpServer::stdio("calc", command);
        if let Ok(ledger) = std::env::var("FLOCK_MCP_LEDGER") {
            server = server.env("FLOCK_MCP_LEDGER", ledger);
        }
        builder = builder.mcp_server(server);
    }
    // FLOCK_TRANSCRIPT_DIR: a transcript store the workers share
    if let Ok(dir) = std::env::var("FLOCK_TRANSCRIPT_DIR") {
        builder = builder.transcript_store(flock::codec::FsBlobStore::new(dir));
    }
    // FLOCK_TRANSCRIPT_BUCKET: one in an S3-protocol bucket (AWS_ENDPOINT, AWS_ACCESS_KEY_ID, ..)
    if let Ok(bucket) = std::env::var("FLOCK_TRANSCRIPT_BUCKET") {
        let store = flock::codec::ObjectStoreBlobStore::s3_from_env(&bucket, "transcripts/")
            .map_err(|e| flock::Error::Config(e.to_string()))?;
        builder = builder.transcript_store(store);
    }
    let flock = builder
        .local_debug(false)
        .in_process_worker(false)
        // explicit, so the linker cannot drop the library's registrations
        .flow(d_flow)
        .agent(d_first)
        .agent(d_second)
        .agent(d_third)
        .flow(chain_ten)
        .agent(chain_step)
        .agent(k_ten_steps)
        .agent(k_six_then_wait)
        .flow(soak_flow)
        .agent(soak_step)
        .flow(trip_flow)
        .agent(trip_planner)
        .flow(pay_trip)
        .agent(trip_payer)
        .flow(mcp_trip)
        .agent(mcp_planner)
        .temporal(TemporalExecutorConfig {
            server_url,
            task_queue,
            ..Default::default()
        })
        .build()
        .await?;
    // FLOCK_MAX_AGENTS: agent attempts at once (the kill soak keeps it low, so that the soak
    // lasts long enough to be killed into)
    let mut limits = flock::WorkerLimits::default();
    if let Ok(max) = std::env::var("FLOCK_MAX_AGENTS") {
        limits.max_concurrent_agents = max.parse().map_err(|_| {
            flock::Error::Config(format!("FLOCK_MAX_AGENTS: `{max}` is not a count"))
        })?;
    }
    println!("worker ready");
    flock.worker().limits(limits).run().await
}
