//! Prints a BIG-bench task's queries as JSON lines (to compare with
//! docs/notes/bigbench_render.py): `bigbench_queries TASK_DIR SHOTS [MAX_EXAMPLES]`.

use huarizo_eval::tasks::bigbench::BigBenchTask;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let shots: usize = args.get(2).ok_or("usage: TASK_DIR SHOTS [MAX]")?.parse()?;
    let max = args.get(3).map(|m| m.parse()).transpose()?;
    let task = BigBenchTask::load(Path::new(&args[1]), max, 42)?;
    for leaf in &task.leaves {
        for q in leaf.queries(shots)? {
            let line = serde_json::json!({
                "task": q.task,
                "shots": shots,
                "example_index": q.example,
                "input": q.input,
                "target": q.target,
                "choices": q.choices.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
            });
            println!("{line}");
        }
    }
    Ok(())
}
