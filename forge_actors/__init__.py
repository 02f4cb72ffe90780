"""forge_actors: an event-sourced deliberation engine of LLM and human participants."""

__version__ = "0.1.0"
