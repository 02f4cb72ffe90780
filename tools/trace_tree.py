"""Run one mock deliberation traced to memory and print its exported spans as a tree (docs/tracing.md).

    python tools/trace_tree.py [--max-iterations 1]

Needs the otel extra (``pip install 'forge-actors[otel]'``). The session runs inside a span
``POST /sessions`` standing for the web request that started it, on a fresh log in a temp folder;
alice reads a file of a throwaway workspace with a tool; bob's drafts fail (a server error) and are retried once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from forge_actors.engine import Forge, trace_sessions  # noqa: E402

#: The attributes shown beside each span (the others are in the exporter's output).
SHOWN = ("gen_ai.provider.name", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
         "gen_ai.response.finish_reasons", "error.type", "gen_ai.tool.name", "forge.round.status",
         "forge.session.outcome")


def run(max_iterations: int) -> tuple[list[ReadableSpan], dict[str, float]]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    with tempfile.TemporaryDirectory() as folder:
        workspace = Path(folder) / "repo"
        workspace.mkdir()
        (workspace / "notes.md").write_text("# Notes\nThe cache must be invalidated on every write.\n")
        with Forge(str(Path(folder) / "forge.db")) as forge:
            tracing = trace_sessions(forge, tracer_provider=tracer_provider,
                                     meter_provider=MeterProvider(metric_readers=[reader]))
            with tracer_provider.get_tracer("web app").start_as_current_span("POST /sessions"):
                session_id = forge.create_session(
                    "Review notes.md and propose a plan", ["mock:alice?tools=file", "mock:bob?fail_on=draft"],
                    workspace=str(workspace), max_iterations=max_iterations, max_retries=1)
            list(forge.deliberate(session_id))
            tracing.caught_up()
            tracing.close()
    sums = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                sums[metric.name] = sum(point.sum for point in metric.data.data_points)
    return list(exporter.get_finished_spans()), sums


def tree(spans: list[ReadableSpan]) -> list[str]:
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {span.context.span_id for span in spans}
    for span in sorted(spans, key=lambda s: (s.start_time or 0, s.end_time or 0)):
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    origin = min(span.start_time or 0 for span in spans)
    lines: list[str] = []

    def show(span: ReadableSpan, depth: int) -> None:
        start = ((span.start_time or 0) - origin) / 1e6
        took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        shown = [f"{key.removeprefix('gen_ai.').removeprefix('forge.')}={_value(span.attributes[key])}"
                 for key in SHOWN if span.attributes and key in span.attributes]
        lines.append(f"{'  ' * depth}{span.name}  [+{start:.1f} ms, {took:.1f} ms]  {' '.join(shown)}".rstrip())
        for child in children.get(span.context.span_id, []):
            show(child, depth + 1)

    for root in children.get(None, []):
        show(root, 0)
    return lines


def _value(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iterations", type=int, default=1)
    args = parser.parse_args()
    spans, sums = run(args.max_iterations)
    trace_id = {span.context.trace_id for span in spans}
    print(f"{len(spans)} spans in {len(trace_id)} trace(s) {', '.join(trace.format_trace_id(t) for t in trace_id)}")
    print("\n".join(tree(spans)))
    for name, total in sorted(sums.items()):
        print(f"{name}: sum {total:g}")


if __name__ == "__main__":
    main()
