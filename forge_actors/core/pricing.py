"""Estimated cost of token usage: a price table per model, overridable in forge.toml.

Prices are US dollars per million tokens, as the vendors list them for standard
(non-batch, uncached) use; they change, so every figure computed here is labelled an
estimate. A model with no known price costs ``None`` ("unknown"), never zero; only
the offline providers (mock, replay) and local Ollama models are known to be free.
"""

from __future__ import annotations

from collections.abc import Mapping

from forge_actors.core.events import Price as Price  # defined with the events: a session records prices
from forge_actors.core.events import TokenUsage

#: Shipped defaults (USD per million input / output tokens).
DEFAULT_PRICES: dict[str, Price] = {
    "claude-opus-4-20250514": Price(15.0, 75.0),
    "claude-sonnet-4-20250514": Price(3.0, 15.0),
    "claude-3-7-sonnet-20250219": Price(3.0, 15.0),
    "claude-3-5-sonnet-20241022": Price(3.0, 15.0),
    "claude-3-5-haiku-20241022": Price(0.8, 4.0),
    "gpt-4o": Price(2.5, 10.0),
    "gpt-4o-mini": Price(0.15, 0.6),
    "gpt-4.1": Price(2.0, 8.0),
    "gpt-4.1-mini": Price(0.4, 1.6),
    "gpt-4.1-nano": Price(0.1, 0.4),
    "o3-mini": Price(1.1, 4.4),
}
#: Providers that never bill: offline ones, and models run locally.
FREE_PROVIDERS = frozenset({"mock", "replay", "ollama"})


def price_of(provider: str, model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of ``model`` (overrides first), free for FREE_PROVIDERS, None when unknown."""
    if overrides and model in overrides:
        return overrides[model]
    if provider.split(":", 1)[0] in FREE_PROVIDERS:
        return Price(0.0, 0.0)
    return DEFAULT_PRICES.get(model)


def estimate_cost(usage: TokenUsage, price: Price | None) -> float | None:
    """Dollars for ``usage`` at ``price``; None when the price is unknown."""
    if price is None:
        return None
    return (usage.input_tokens * price.input_per_mtok + usage.output_tokens * price.output_per_mtok) / 1_000_000


def format_cost(cost: float | None) -> str:
    if cost is None:
        return "unknown"
    return f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"
