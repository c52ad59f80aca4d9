#!/usr/bin/env python3
"""Evaluate a knowledge base and print the questions it gets wrong (the Python binding).

    python3 samples/bot-designer/evaluate.py --kb samples/kb/shop.json \\
        --questions samples/kb/shop-eval.jsonl [--set policy.answer_threshold=0.6] [--json]

Each question of the evaluation set (JSON Lines: {"text": ..., "expect": "entry-id" or null},
docs/knowledge-format.md) is asked in a fresh conversation, as `madoguchi-bot eval` does. A
question is wrong when an in-scope one is not answered with its entry, or an out-of-scope one
(expect: null) is answered at all. For each, it prints what the bot did and where the expected
entry ranked among the candidates; then the top-1 accuracy, MRR@5 and out-of-scope recall.

Needs the madoguchi package (pip install bindings/python) and libmadoguchi.so.1
($MADOGUCHI_LIBRARY, or installed). Exit status: 0; 1 with --fail-under when the top-1
accuracy is below it; 2 when the knowledge base or the evaluation set cannot be used (the
message says which file, which line and what is wrong).
"""

import argparse
import json
import sys

import madoguchi


class BadSet(Exception):
    """The evaluation set cannot be used: the message names the file and the line."""


def read_set(path):
    """The questions of a JSON Lines evaluation set: (line number, text, expected entry or None)."""
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte order mark is not a question
            lines = f.read().splitlines()
    except OSError as e:
        raise BadSet("%s: %s" % (path, e.strerror or e)) from None
    except UnicodeDecodeError as e:
        raise BadSet("%s: not UTF-8 (byte %d); save it as UTF-8" % (path, e.start)) from None
    questions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = "%s:%d" % (path, number)
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadSet("%s: not JSON (%s); each line is {\"text\": ..., \"expect\": \"entry-id\" or null}"
                         % (where, e.msg)) from None
        if not isinstance(q, dict) or not isinstance(q.get("text"), str) or "expect" not in q:
            raise BadSet('%s: each line is {"text": ..., "expect": "entry-id" or null}' % where)
        if q["expect"] is not None and not isinstance(q["expect"], str):
            raise BadSet('%s: "expect" is an entry id or null' % where)
        questions.append((number, q["text"], q["expect"]))
    if not questions:
        raise BadSet("%s: no questions" % path)
    return questions


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kb", required=True, help="knowledge base (.json, .csv, .tsv)")
    p.add_argument("--questions", required=True, help="evaluation set (.jsonl)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. policy.answer_threshold=0.6")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--fail-under", type=float, default=None, metavar="TOP1",
                   help="exit 1 when the top-1 accuracy is below this")
    args = p.parse_args(argv)

    try:
        bot = madoguchi.Bot.open(args.kb, settings=args.set)
    except madoguchi.Error as e:
        print("evaluate: %s" % e, file=sys.stderr)
        return 2
    try:
        questions = read_set(args.questions)
    except BadSet as e:
        print("evaluate: %s" % e, file=sys.stderr)
        return 2
    known = set(bot.info()["entry_ids"])
    in_scope = correct = oos = oos_ok = 0
    rr = 0.0
    wrong = []
    with bot:
        for line, text, expect in questions:
            if expect is not None and expect not in known:
                print("evaluate: %s:%d: '%s' is not an entry of %s" % (args.questions, line, expect, args.kb),
                      file=sys.stderr)
                return 2
            reply = bot.ask(text)  # a fresh conversation for every question
            ranked = [c.entry for c in reply.candidates]
            answered = reply.decision is madoguchi.Decision.ANSWER
            if expect is None:
                oos += 1
                ok = not answered
                oos_ok += ok
            else:
                in_scope += 1
                ok = answered and reply.entry == expect
                correct += ok
                rr += 1.0 / (ranked.index(expect) + 1) if expect in ranked[:5] else 0.0
            if not ok:
                wrong.append((line, text, expect, reply, ranked))

    for line, text, expect, reply, ranked in wrong:
        got = "%s %s" % (reply.decision, reply.entry) if reply.entry else str(reply.decision)
        rank = ("rank %d" % (ranked.index(expect) + 1)) if expect in ranked else "not in the candidates"
        print("%s:%d: %s" % (args.questions, line, text))
        print("    expected %-28s got %s (%s)" % (expect or "(out of scope)", got, reply.reason))
        if expect is not None:
            print("    expected entry: %s" % rank)
        for c in reply.candidates[:3]:
            print("      %-32s confidence %.3f" % (c.entry, c.confidence))
    summary = {
        "questions": in_scope + oos,
        "wrong": len(wrong),
        "top1": correct / in_scope if in_scope else 0.0,
        "mrr5": rr / in_scope if in_scope else 0.0,
        "oos_recall": oos_ok / oos if oos else 0.0,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print("%d question(s), %d wrong: top-1 %.3f, MRR@5 %.3f, out-of-scope recall %.3f" % (
            summary["questions"], summary["wrong"], summary["top1"], summary["mrr5"], summary["oos_recall"]))
    if args.fail_under is not None and summary["top1"] < args.fail_under:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
