//! What reading a model's structured answer costs: the JSON text of a typical answer (~1 KB and
//! ~100 KB) through `OutputFormat::parse_answer` (parse, drop optional nulls, validate against
//! the output schema, deserialize), against plain `serde_json::from_str` into the same type,
//! with validation alone broken out. Also the strict-schema sanitizer on the output schema.
//!
//! ```text
//! cargo bench -p flock --bench model_parse
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use flock::model::OutputFormat;
use flock::model::schema::{drop_optional_nulls, strict_schema};
use flock::model::validate::validate;
use flock::prelude::*;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// The report's title
    pub title: String,
    /// A summary in a few sentences
    pub summary: String,
    /// What was found, most relevant first
    pub items: Vec<Item>,
    /// Overall confidence from 0 to 1
    pub confidence: f64,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Item {
    /// The item's name
    pub name: String,
    /// Price in euros
    pub price: f64,
    /// Free-form tags
    pub tags: Vec<String>,
    /// Rating from 1 to 5, when known
    pub rating: Option<u8>,
    /// The kind of item
    pub category: Category,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub enum Category {
    Book,
    Tool,
    Food,
}

fn answer(items: usize) -> String {
    let report = Report {
        title: "Quarterly findings on household items".into(),
        summary: "Prices rose slightly; tools sold best. Ratings are stable across categories, \
                  with a few outliers among food items."
            .into(),
        items: (0..items)
            .map(|i| Item {
                name: format!("item number {i} with a descriptive name"),
                price: 3.5 + i as f64 * 0.25,
                tags: vec!["household".into(), format!("batch-{}", i % 7), "q3".into()],
                rating: if i % 3 == 0 {
                    None
                } else {
                    Some((i % 5 + 1) as u8)
                },
                category: match i % 3 {
                    0 => Category::Book,
                    1 => Category::Tool,
                    _ => Category::Food,
                },
            })
            .collect(),
        confidence: 0.82,
    };
    serde_json::to_string(&report).expect("serializes")
}

/// The median time of `f` over `runs` runs, after `runs / 10` warm-up runs.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..runs / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let format = OutputFormat::of::<Report>();
    println!("| answer | serde_json::from_str | validate only | parse_answer (all steps) |");
    println!("|---|---|---|---|");
    for (items, runs) in [(7, 20_000), (790, 300)] {
        let text = answer(items);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let baseline = median(runs, || {
            black_box(serde_json::from_str::<Report>(black_box(&text)).unwrap());
        });
        let validate_only = median(runs, || {
            black_box(validate(black_box(&format.schema), black_box(&value)).is_ok());
        });
        let full = median(runs, || {
            black_box(format.parse_answer::<Report>(black_box(&text)).unwrap());
        });
        println!(
            "| {:.1} KB ({items} items) | {} | {} | {} |",
            text.len() as f64 / 1024.0,
            micros(baseline),
            micros(validate_only),
            micros(full)
        );
    }
    let text = answer(790);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let clone = median(300, || {
        black_box(value.clone());
    });
    let nulls = median(300, || {
        let mut v = value.clone();
        drop_optional_nulls(&format.schema, &mut v);
        black_box(v);
    });
    let to_value = median(300, || {
        black_box(serde_json::from_str::<serde_json::Value>(black_box(&text)).unwrap());
    });
    println!(
        "\n100 KB answer: text -> serde_json::Value {}, drop_optional_nulls {} (after a {} clone)",
        micros(to_value),
        micros(nulls.saturating_sub(clone)),
        micros(clone)
    );
    let sanitize = median(20_000, || {
        black_box(strict_schema(black_box(&format.schema)).unwrap());
    });
    println!("strict_schema of the output schema: {}", micros(sanitize));
}
