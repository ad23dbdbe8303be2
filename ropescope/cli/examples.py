"""Examples shown at the end of each command's ``--help`` (each runs as written on the bundled model,
except ``sweep``'s, which needs a hub repository whose revisions are training checkpoints)."""

EXAMPLES = {
    "profile": [
        (
            "profile the bundled Gemma 3 270M on the Shakespeare prompts",
            "ropescope profile",
        ),
        (
            "a hub model on a GPU, long prompts",
            "ropescope profile google/gemma-7b --device cuda --dtype bfloat16 --max-tokens 8192",
        ),
        (
            "your own prompts, output where you want it",
            "ropescope profile smollm2-135m --prompts my_prompts.txt --out runs/mine",
        ),
        (
            "a training checkpoint saved without tokenizer files: borrow its tokenizer",
            "ropescope profile ./checkpoints/step-1000 --tokenizer google/gemma-3-270m",
        ),
        (
            "the context stretched 4x with YaRN at inference (compare with: ropescope compare ... --by chunk)",
            "ropescope profile gemma-3-270m --rope-scaling yarn:4 --out runs/gemma-yarn4",
        ),
        (
            "a scripted run over many checkpoints: numbers only, figures later with 'ropescope plot'",
            "ropescope profile ./checkpoints/step-1000 --no-figures --out runs/step-1000",
        ),
    ],
    "plot": [
        (
            "redraw a saved run's figures, per-head map of layer 5",
            "ropescope plot runs/gemma-3-270m --head-layer 5",
        )
    ],
    "merge": [
        (
            "merge shards profiled separately",
            "ropescope merge runs/a runs/b --out all.safetensors",
        )
    ],
    "models": [("which bundled models are installed", "ropescope models")],
    "families": [
        (
            "which RoPE families of the installed transformers work, as Markdown",
            "ropescope families --markdown",
        )
    ],
    "heads": [
        ("classify every head of the bundled model", "ropescope heads"),
        (
            "a stricter threshold; zero 2 chunks per head in the causal test",
            "ropescope heads --threshold 0.6 --ablate 2",
        ),
        ("with the interactive page and tidy parquet tables", "ropescope heads --report --format parquet"),
    ],
    "head": [
        (
            "one head on one prompt",
            "ropescope head gemma-3-270m 2 3 --prompt 'To be, or not to be'",
        )
    ],
    "prope": [
        (
            "the p-RoPE table of the docs (docs/how-to/prope.md)",
            "ropescope prope gemma-3-270m --p 0.25,0.5,0.75,1 --variants all --context 512",
        ),
        (
            "only p-RoPE (drop the slowest), on your text",
            "ropescope prope --variants p --text my_text.txt",
        ),
        (
            "perplexity past the trained length, unscaled and with YaRN (one 16k-token window of the long text)",
            "ropescope prope smollm2-135m --p 1 --text stdlib --context 16384 --windows 1 --extrapolate",
        ),
        (
            "the same window with the context stretched 2x by YaRN",
            "ropescope prope smollm2-135m --p 1 --text stdlib --context 16384 --windows 1 --rope-scaling yarn:2",
        ),
    ],
    "train-prope": [
        (
            "the T2 experiment (resumable)",
            "ropescope train-prope --seeds 3 --steps 300 --out runs/t2",
        ),
        (
            "a quick look: one seed, two encodings",
            "ropescope train-prope --seeds 1 --steps 50 --encodings 'NoPE,RoPE theta=10k'",
        ),
    ],
    "figures": [
        (
            "every figure and table of the paper for the bundled model",
            "ropescope figures --out figures/",
        ),
        ("a few entries (ids: see the list above)", "ropescope figures --only F3,F5,T3"),
        ("figures plus an interactive page of the profile and heads", "ropescope figures --only F3 --report"),
    ],
    "compare": [
        (
            "two prompt domains on one model",
            "ropescope compare runs/gemma-shakespeare runs/gemma-python --out runs/domains",
        ),
        (
            "two different models, by relative depth and chunk position",
            "ropescope compare runs/gemma-3-270m runs/smollm2-135m --by relative",
        ),
    ],
    "report": [
        ("the page of a head scan (run 'ropescope heads' first)", "ropescope report runs/gemma-3-270m-heads"),
        ("a profile run's page, written elsewhere", "ropescope report runs/gemma-3-270m --out usage.html"),
    ],
    "sweep": [
        (
            "Pythia's published training checkpoints (hub revisions), short prompts",
            "ropescope sweep EleutherAI/pythia-160m --revisions step1000,step8000,step33000,step143000 "
            "--max-tokens 256",
        ),
        (
            "continue an interrupted sweep",
            "ropescope sweep EleutherAI/pythia-160m --revisions step1000,step8000,step33000,step143000 "
            "--max-tokens 256 --resume",
        ),
    ],
}


def epilog(command: str) -> str:
    """The ``--help`` epilog of ``command``: its examples, one per paragraph."""
    lines = ["Examples:"]
    for what, line in EXAMPLES.get(command, []):
        lines.append(f"  # {what}\n\n  {line}")
    return "\n\n".join(lines)
