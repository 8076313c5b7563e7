//! Shared set-up of the examples.

/// The model the examples use: `FLOCK_MODEL` when set, `openai/gpt-4o-mini` when `OPENAI_API_KEY`
/// is set, else the offline `TestModel` (with a notice).
pub fn example_model() -> String {
    if let Ok(model) = std::env::var("FLOCK_MODEL") {
        return model;
    }
    if std::env::var_os("OPENAI_API_KEY").is_some() {
        return "openai/gpt-4o-mini".to_owned();
    }
    eprintln!(
        "notice: no OPENAI_API_KEY or FLOCK_MODEL set; declarative agents are answered by the offline TestModel"
    );
    "test".to_owned()
}
