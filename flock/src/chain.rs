//! Static hand-off chains: `#[agent(hand_off = next)]` links agents at compile time; [`HandOff`]
//! computes the chain's result type, and [`Chain`] runs a chain as a flow (`flock.run(a, ..)`).

use crate::agent::{Agent, AgentIo};
use crate::error::FlowError;
use crate::flow::{Flow, FlowContext};

use crate::spec::FlowSpec;

/// The end of a hand-off chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct End;

/// A link of a static hand-off chain: what runs after an agent whose output is `In`.
///
/// Implemented by [`End`] (the chain stops, its result is `In`) and by every agent whose input
/// `In` converts into. `Final` is the type the whole chain returns, computed at compile time.
pub trait HandOff<In>: Send + Sync + 'static {
    /// The chain's result type.
    type Final: AgentIo;

    /// Runs the rest of the chain on `input`.
    fn continue_chain(
        ctx: &FlowContext,
        input: In,
    ) -> impl Future<Output = Result<Self::Final, FlowError>> + Send + '_;
}

impl<In: AgentIo> HandOff<In> for End {
    type Final = In;

    fn continue_chain(
        _ctx: &FlowContext,
        input: In,
    ) -> impl Future<Output = Result<In, FlowError>> + Send + '_ {
        std::future::ready(Ok(input))
    }
}

impl<In, B> HandOff<In> for B
where
    B: Agent<Next: HandOff<<B as Agent>::Output>>,
    In: Into<B::Input> + Send + 'static,
{
    type Final = <B::Next as HandOff<B::Output>>::Final;

    async fn continue_chain(ctx: &FlowContext, input: In) -> Result<Self::Final, FlowError> {
        let output = ctx.call(B::default(), input.into()).await?;
        <B::Next as HandOff<B::Output>>::continue_chain(ctx, output).await
    }
}

/// The result type of the hand-off chain that starts at `A`.
pub type ChainOutput<A> = <<A as Agent>::Next as HandOff<<A as Agent>::Output>>::Final;

/// The static hand-off chain that starts at agent `A`, as a flow: `flock.run(a, input)` runs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chain<A>(pub A);

impl<A: Agent<Next: HandOff<<A as Agent>::Output>>> Flow for Chain<A> {
    type Input = A::Input;
    type Output = ChainOutput<A>;
    const NAME: &'static str = A::CHAIN.name;

    fn spec(&self) -> &'static FlowSpec {
        A::CHAIN
    }

    async fn run(self, ctx: &FlowContext, input: A::Input) -> Result<Self::Output, FlowError> {
        let output = ctx.call(self.0, input).await?;
        <A::Next as HandOff<A::Output>>::continue_chain(ctx, output).await
    }
}

impl FlowContext {
    /// Runs the hand-off chain that starts at `agent` (as `Flock::run` does) inside this flow.
    pub async fn call_chain<A: Agent<Next: HandOff<<A as Agent>::Output>>>(
        &self,
        agent: A,
        input: A::Input,
    ) -> Result<ChainOutput<A>, FlowError> {
        let output = self.call(agent, input).await?;
        <A::Next as HandOff<A::Output>>::continue_chain(self, output).await
    }
}
