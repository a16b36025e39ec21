"""The store's schema, as portable SQL: the tables of facts (version 2, then 3's, 4's and
5's additions).

Types are the standard ones (TEXT, INTEGER, DOUBLE PRECISION); keys are text made by the
harness (a cell's id is a hash of its key), never engine-generated. JSON columns hold
documents that are facts as they came (the settings asked for, a device's resolved
settings, a runner's own result document), never figures computed from other columns.
"""

from __future__ import annotations

TABLES_V2 = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,           -- ISO 8601 UTC, microseconds
    finished_at TEXT,
    status TEXT NOT NULL,               -- running | completed | interrupted | incomplete
    harness_version TEXT NOT NULL,
    label TEXT,
    settings TEXT NOT NULL,             -- JSON: what was asked (for --resume)
    host TEXT NOT NULL,                 -- JSON: the harness host when the run started
    protocol TEXT,                      -- JSON: the measurement protocol's settings
    protocol_version INTEGER,           -- the stopping rule that made the stop decisions
    seed INTEGER                        -- of the per-round shuffle
);
CREATE TABLE sessions (
    run_id TEXT NOT NULL REFERENCES runs(id),
    session INTEGER NOT NULL,           -- 1: the start; 2, 3 ...: resumes
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    host TEXT,
    pid INTEGER,
    harness_version TEXT,
    PRIMARY KEY (run_id, session)
);
CREATE TABLE run_devices (
    run_id TEXT NOT NULL REFERENCES runs(id),
    device TEXT NOT NULL,
    session INTEGER NOT NULL,
    transport TEXT,
    runner TEXT,
    machine_id TEXT,                    -- the machine behind the device name
    config TEXT,                        -- JSON: the device file as resolved
    runner_name TEXT,
    runner_version TEXT,
    runtime_name TEXT,
    runtime_version TEXT,
    runtime_module TEXT,
    python_version TEXT,
    numpy_version TEXT,
    cpu_model TEXT,
    cpu_flags TEXT,                     -- JSON list
    cpu_count INTEGER,
    machine TEXT,
    platform TEXT,
    probed_at TEXT,
    PRIMARY KEY (run_id, device, session)
);
CREATE TABLE variants (
    run_id TEXT NOT NULL REFERENCES runs(id),
    model TEXT NOT NULL,
    recipe TEXT NOT NULL,
    sha256 TEXT,
    source TEXT,                        -- zoo name or the user's file path
    status TEXT NOT NULL,               -- ok | failed
    size_bytes INTEGER,
    random_weights INTEGER NOT NULL,
    error TEXT,
    build_seconds DOUBLE PRECISION,
    cached INTEGER,
    cache_key TEXT,                     -- JSON
    check_inputs INTEGER,
    check_top1_agreement DOUBLE PRECISION,
    check_snr_db DOUBLE PRECISION,      -- NULL when identical (infinite) or undefined
    check_identical INTEGER,
    check_error TEXT,
    position INTEGER,
    PRIMARY KEY (run_id, model, recipe)
);
CREATE TABLE cells (
    run_id TEXT NOT NULL REFERENCES runs(id),
    cell_id TEXT NOT NULL,
    model TEXT NOT NULL,
    recipe TEXT NOT NULL,
    sha256 TEXT,
    device TEXT NOT NULL,
    backend TEXT NOT NULL,
    threads INTEGER NOT NULL,
    status TEXT NOT NULL,               -- pending | ok | failed | skipped
    reason TEXT,
    stop_reason TEXT,                   -- target | max_rounds | budget | fixed_rounds | ...
    protocol_version INTEGER,
    target DOUBLE PRECISION,
    pilot_rounds INTEGER,               -- Stein's first stage: the pilot the plan came from
    needed_rounds INTEGER,              -- rounds the family needed for a ±target interval
    planned_rounds INTEGER,             -- needed, capped at the protocol's max_rounds
    memory_bytes INTEGER,               -- peak memory from a separate untimed run, if any
    memory_evidence TEXT,               -- the line it came from, or why it is unknown
    position INTEGER,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, cell_id)
);
CREATE TABLE device_rounds (
    run_id TEXT NOT NULL REFERENCES runs(id),
    device TEXT NOT NULL,
    round INTEGER NOT NULL,
    session INTEGER,
    seed INTEGER,
    planned INTEGER,                    -- cells measured in this round
    started_at TEXT,
    finished_at TEXT,                   -- NULL: never completed (interrupted, device lost)
    cooldown_pause_s DOUBLE PRECISION,
    cooldown_waited_s DOUBLE PRECISION,
    temperature_before_c DOUBLE PRECISION,
    temperature_after_c DOUBLE PRECISION,
    cooldown_timed_out INTEGER,
    PRIMARY KEY (run_id, device, round)
);
CREATE TABLE rounds (
    run_id TEXT NOT NULL REFERENCES runs(id),
    cell_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    session INTEGER,
    position INTEGER,                   -- place in the device round
    predecessor TEXT,                   -- cell_id measured just before, in the same round
    status TEXT NOT NULL,               -- ok | failed
    error TEXT,
    device_lost INTEGER NOT NULL,
    n INTEGER,
    summary_us DOUBLE PRECISION,        -- the round's value: its median, else its mean
    summary_kind TEXT,                  -- median | mean
    mean_us DOUBLE PRECISION,
    median_us DOUBLE PRECISION,
    p5_us DOUBLE PRECISION,
    p90_us DOUBLE PRECISION,
    p95_us DOUBLE PRECISION,
    p99_us DOUBLE PRECISION,
    std_us DOUBLE PRECISION,
    min_us DOUBLE PRECISION,
    max_us DOUBLE PRECISION,
    warmup_runs INTEGER,
    loop_overhead_us DOUBLE PRECISION,  -- the timing loop's own cost per sample
    batch INTEGER,                      -- invokes timed together per sample (tiny models)
    init_us DOUBLE PRECISION,
    first_inference_us DOUBLE PRECISION,
    peak_memory_bytes INTEGER,
    delegated TEXT,                     -- yes | no | unknown
    delegate_nodes INTEGER,
    graph_nodes INTEGER,
    delegation_evidence TEXT,           -- the line or count that shows it
    runtime_name TEXT,
    runtime_version TEXT,
    runner_name TEXT,
    runner_version TEXT,
    loadavg_1m DOUBLE PRECISION,
    procs_running INTEGER,
    cpus_available INTEGER,
    steal_fraction DOUBLE PRECISION,
    temperature_c DOUBLE PRECISION,
    temperature_before_c DOUBLE PRECISION,
    battery_temperature_c DOUBLE PRECISION,
    charging INTEGER,
    screen_on INTEGER,
    governor TEXT,
    busy_processes TEXT,                -- JSON list of {pid, name, cpu_share}
    started_unix DOUBLE PRECISION,
    finished_unix DOUBLE PRECISION,
    host_seconds DOUBLE PRECISION,
    record TEXT,                        -- JSON: the runner's own document
    PRIMARY KEY (run_id, cell_id, round)
);
"""

# Version 3: each variant's static inspection, so a report built later (the dashboard's
# model pages) needs neither the .tflite file nor the cache it was built in.
TO_V3 = """
ALTER TABLE variants ADD COLUMN ops TEXT;              -- JSON {builtin op name: count}
ALTER TABLE variants ADD COLUMN macs INTEGER;          -- static multiply-accumulates
ALTER TABLE variants ADD COLUMN weight_scheme TEXT;    -- e.g. int8 per-channel
"""

# Version 4: accuracy, measured where each variant runs (`bench.accuracy`). Facts only:
# counts, every prediction and the labels, so any two variants can be paired on the same
# inputs later; the SNR is against the fp32 outputs of the same device and backend, which
# only the evaluation ever held.
TO_V4 = """
CREATE TABLE evaluations (
    run_id TEXT NOT NULL REFERENCES runs(id),
    model TEXT NOT NULL,
    recipe TEXT NOT NULL,
    sha256 TEXT,
    device TEXT NOT NULL,
    backend TEXT NOT NULL,
    threads INTEGER,
    dataset TEXT NOT NULL,              -- as asked: foolbox-imagenet, heldout, a folder
    dataset_sha256 TEXT,                -- of the inputs as staged, and the labels
    dataset_size INTEGER,
    labelled INTEGER NOT NULL,
    measured_on TEXT NOT NULL,          -- device | host (a runner that returns no outputs)
    status TEXT NOT NULL,               -- ok | failed
    reason TEXT,
    n INTEGER,                          -- inputs evaluated
    top1 INTEGER,                       -- inputs whose top-1 class is the label
    top5 INTEGER,
    predictions TEXT,                   -- JSON: the top-1 class of every input, in order
    labels TEXT,                        -- JSON: the labels in the same order (NULL: none)
    reference_recipe TEXT,              -- what snr_db compares with (same device, backend)
    snr_db DOUBLE PRECISION,            -- NULL when identical or undefined
    identical INTEGER,
    runtime_name TEXT,
    runtime_version TEXT,
    delegated TEXT,
    seconds DOUBLE PRECISION,
    evaluated_at TEXT,
    PRIMARY KEY (run_id, model, recipe, device, backend, dataset)
);
"""

# Version 5: the regression gate's decisions: what a run was judged against and how
# (`bench run --baseline`). The verdicts themselves are not
# stored: they follow from these inputs and the runs' rounds, which `bench prune` keeps.
TO_V5 = """
CREATE TABLE gates (
    run_id TEXT NOT NULL REFERENCES runs(id),
    judged_at TEXT NOT NULL,            -- ISO 8601 UTC
    ref TEXT NOT NULL,                  -- as given: a run id, latest, a label, last:K
    min_effect DOUBLE PRECISION NOT NULL,  -- fractions
    alpha DOUBLE PRECISION NOT NULL,
    baseline_ids TEXT NOT NULL,         -- JSON: every run some benchmark was judged against
    PRIMARY KEY (run_id, judged_at)
);
"""

TABLES = ("runs", "sessions", "run_devices", "variants", "cells", "device_rounds", "rounds",
          "evaluations", "gates")


def statements(script: str) -> list[str]:
    """The SQL statements of a script: comments dropped, split at semicolons (the scripts
    here have no strings that hold either)."""
    lines = [line.split("--")[0].rstrip() for line in script.splitlines()]
    code = "\n".join(line for line in lines if line.strip())
    return [chunk.strip() for chunk in code.split(";") if chunk.strip()]


def columns(table: str) -> list[str]:
    """The columns of a table, in order: version 2's, then those later versions added
    (from the schema text: one place)."""
    script = next((v for v in (TO_V4, TO_V5) if f"CREATE TABLE {table} (" in v), TABLES_V2)
    start = script.index(f"CREATE TABLE {table} (")
    body = script[start:script.index(");", start)].splitlines()[1:]
    names = []
    for line in body:
        word = line.strip().split(" ")[0]
        if word and word.upper() != "PRIMARY" and not word.startswith("--"):
            names.append(word)
    prefix = f"ALTER TABLE {table} ADD COLUMN "
    names += [statement[len(prefix):].split()[0] for statement in statements(TO_V3)
              if statement.startswith(prefix)]
    return names
