"""The samples: the bot designer's evaluation script (Python) and c-client (C99)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO, SHOP_EVAL, SHOP_KB, T, require_env

EVALUATE = REPO / "samples" / "bot-designer" / "evaluate.py"


def run(args, timeout=120):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_evaluate_prints_the_questions_it_gets_wrong():
    p = run([sys.executable, str(EVALUATE), "--kb", str(SHOP_KB), "--questions", str(SHOP_EVAL), "--json"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    summary = json.loads(lines[-1])
    assert summary["questions"] == 168 and summary["wrong"] > 0
    assert 0 < summary["top1"] <= 1 and 0 < summary["mrr5"] <= 1
    wrong = [line for line in lines if line.startswith(str(SHOP_EVAL) + ":")]
    assert len(wrong) == summary["wrong"]
    assert any(line.strip().startswith("expected ") for line in lines)
    # the same figures as the designer CLI's definitions: top-1 over in-scope questions
    assert abs(summary["top1"] - 0.76) < 0.2


def test_evaluate_fail_under_and_settings():
    p = run([sys.executable, str(EVALUATE), "--kb", str(SHOP_KB), "--questions", str(SHOP_EVAL), "--fail-under", "0.99"])
    assert p.returncode == 1 and "question(s)" in p.stdout
    p = run([sys.executable, str(EVALUATE), "--kb", str(SHOP_KB), "--questions", str(SHOP_EVAL),
             "--set", "policy.nope=1"])
    assert p.returncode == 2 and "unknown setting" in p.stderr


def test_evaluate_says_what_is_wrong_with_a_question_set(tmp_path):
    # Each once ended in a traceback with status 1, the status of --fail-under.
    bad = tmp_path / "bad.jsonl"
    cases = [
        (tmp_path / "missing.jsonl", None, "missing.jsonl: No such file or directory"),
        (bad, '{"text": "a", "expect": null}\nnot json\n', "bad.jsonl:2: not JSON"),
        (bad, '{"text": "a"}\n', 'bad.jsonl:1: each line is {"text": ..., "expect": "entry-id" or null}'),
        (bad, "\n\n", "bad.jsonl: no questions"),
    ]
    for path, content, says in cases:
        if content is not None:
            path.write_text(content, encoding="utf-8")
        p = run([sys.executable, str(EVALUATE), "--kb", str(SHOP_KB), "--questions", str(path)])
        assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr, p.stderr
    bad.write_text('\ufeff{"text": "送料はいくらですか", "expect": "shipping-fee"}\n', encoding="utf-8")
    p = run([sys.executable, str(EVALUATE), "--kb", str(SHOP_KB), "--questions", str(bad)])
    assert p.returncode == 0 and "1 question(s), 0 wrong" in p.stdout, p.stdout + p.stderr


def test_c_client_asks_the_bot():
    exe = require_env("MADOGUCHI_C_CLIENT")
    p = run([exe, "--kb", str(SHOP_KB), "送料はいくらですか", "担当者と話したい"])
    assert p.returncode == 0, p.stderr
    assert "decision:   answer (confident) -> shipping-fee" in p.stdout
    assert "hand-off:   {" in p.stdout
    # A clarification shows its numbered choices, as the other clients do.
    p = run([exe, "--kb", str(SHOP_KB), "ポイントのこと"])
    assert p.returncode == 0, p.stderr
    assert "  1) " in p.stdout and "  2) " in p.stdout, p.stdout


def test_c_client_refuses_an_unknown_option_instead_of_asking_it():
    exe = require_env("MADOGUCHI_C_CLIENT")
    p = run([exe, "--kb", str(SHOP_KB), "--json", "x"])
    assert p.returncode == 2 and "unknown option --json" in p.stderr, p.stdout + p.stderr
    p = run([exe, "--kb", str(SHOP_KB), "--state"])
    assert p.returncode == 2 and "--state needs a value" in p.stderr, p.stdout + p.stderr


def test_c_client_chats_with_a_running_hub(hub, tmp_path):
    exe = require_env("MADOGUCHI_C_CLIENT")
    p = run([exe, "--url", hub.url + "/v1/visitor", "--state", str(tmp_path / "c.json"), "送料はいくらですか",
             "返品したいです"], timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "[welcome] conversation c_" in p.stdout
    assert p.stdout.count("[ack] ") == 2 and p.stdout.count("[bot #") >= 2
    # The answer's related questions, read from ev->bot (shipping-fee's follow-ups).
    assert "  related: " in p.stdout and "(free-shipping-threshold)" in p.stdout
    assert os.path.exists(tmp_path / "c.json")
    assert "[state] connected" in p.stdout
