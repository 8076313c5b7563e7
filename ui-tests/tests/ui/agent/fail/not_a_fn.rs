use flock::prelude::*;

#[agent]
struct Research;

fn main() {}
