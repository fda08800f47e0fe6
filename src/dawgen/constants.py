"""File and folder names used across dawgen, in one place."""

ADAPTER_DIR = "adapter"  # a standard PEFT prompt-tuning adapter
CHECKPOINT_DIR = "checkpoint"  # resumable training state, removed when a run completes
METRICS_FILE = "metrics.jsonl"  # one JSON record per evaluation
RESULT_FILE = "result.json"  # the finished run: settings, dev and test metrics, timings
PREDICTIONS_FILE = "predictions.jsonl"
TRAINING_PLOT = "training.png"  # losses, gradient agreement, dev accuracy
GENERATOR_DIR = "generator"  # a tuned generator: label prompts, weight net, generator.json
GENERATOR_SETTINGS_FILE = "generator.json"  # in a tuned generator folder: its model, variant, layout
QUALITY_REPORT = "quality.json"  # a synthetic set compared with the real few-shot data
QUALITY_PLOT = "quality.png"

# a `dawgen run` folder
MANIFEST_FILE = "manifest.json"  # config, versions, git commit, device, every stage's wall time
RESULTS_FILE = "results.json"  # one record per task, seed and method
RESULTS_TABLE = "results.md"  # mean (std) over seeds
SYNTHETIC_FILE = "synthetic.jsonl"  # a stage-2 synthetic set in its folder
REPORT_MARKDOWN = "report.md"
REPORT_HTML = "report.html"
REPORT_DIR = "report"  # the report's figures
DATA_SCALE_PLOT = "data_scale.png"  # accuracy against the synthetic set's size, when a run measured it
