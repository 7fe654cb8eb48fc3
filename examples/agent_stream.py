"""An LLM-style agent that streams its answer token by token, to a reader in another process.

    python examples/agent_stream.py

The workflow plans (its plan goes to the stream ``status`` from workflow code), then
a step "generates" each part of the answer and writes every token to the stream
``tokens`` as it makes it; the workflow closes the stream when the answer is done.
The reader is a separate process (``duralog read-stream --follow``): it prints the
tokens as they are written, and stops when the stream is closed. A reader started
afterwards gets exactly the same tokens: they are in the log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duralog

ANSWER = {
    "greeting": "Hello!",
    "facts": "duralog keeps every step in a log, so a crash loses nothing.",
    "closing": "Anything else?",
}


@duralog.step
def generate(part: str) -> str:
    """Stand-in for a model call that streams: each token goes out as it is made."""
    text = ""
    for word in ANSWER[part].split():
        token = word + " "
        time.sleep(0.02)  # the model thinking
        duralog.write_stream("tokens", token)
        text += token
    return text


@duralog.workflow
async def agent(question: str) -> str:
    duralog.write_stream("status", f"planning an answer to {question!r}")
    answer = ""
    for part in ANSWER:
        duralog.write_stream("status", f"writing the {part}")
        answer += await generate(part)
    duralog.close_stream("tokens")
    duralog.write_stream("status", "done")
    return answer


def main() -> None:
    db = str(Path(tempfile.mkdtemp(prefix="duralog-agent-")) / "agents.db")
    with duralog.Engine(db, worker=False) as engine:
        handle = engine.start(agent, "what is duralog?", id="chat-1")
    # The reader: another process, following the stream live until it is closed.
    reader = subprocess.Popen(
        [sys.executable, "-m", "duralog", "--db", db, "read-stream", "chat-1", "tokens", "-f"],
        stdout=subprocess.PIPE,
        text=True,
    )
    with duralog.Engine(db) as engine:  # the worker runs the agent
        handle = engine.get("chat-1")
        answer = handle.result(timeout=60)
        out, _ = reader.communicate(timeout=60)
        tokens = [json.loads(line) for line in out.splitlines()]  # one JSON value a line
        print(f"  the reader got {len(tokens)} tokens, live, then the end")
        print(f"  they make the answer: {''.join(tokens) == answer}")
        streamed = "".join(handle.read_stream("tokens"))  # a late reader: the same tokens
        print(f"  a late reader got the same answer: {streamed == answer}")
        for status in handle.read_stream("status"):
            print(f"  status: {status}")
    print(f"  answer: {answer.strip()}")


if __name__ == "__main__":
    main()
