"""``fpar data summary`` on the real files and on a bad one."""

from __future__ import annotations

import argparse
import json

from shards.annotations import cli


def run(capsys, *argv):
    """Runs ``fpar data summary`` through a parser holding only this command."""
    parser = argparse.ArgumentParser(prog="fpar")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "summary", *argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_epic55_summary_json(capsys, real_annotations):
    code, out, _ = run(capsys, "--format", "epic55", "--annotations",
                       str(real_annotations / "epic-kitchens-55"), "--json")
    assert code == 0
    splits = json.loads(out)["splits"]
    assert list(splits) == ["train", "s1", "s2"]
    assert splits["train"]["segments"] == 28_472
    assert splits["train"]["videos"] == 272 and splits["train"]["participants"] == 28
    assert splits["train"]["labelled"] is True
    assert 0 < splits["train"]["verb_classes"] <= 125 and 0 < splits["train"]["noun_classes"] <= 352
    assert splits["s1"]["segments"] == 8_047 and splits["s2"]["segments"] == 2_929
    assert splits["s2"]["participant_ids"] == ["P09", "P11", "P18", "P32"]
    assert splits["s1"]["labelled"] is False and splits["s1"]["verb_classes"] is None


def test_egtea_summary_table(capsys, real_annotations):
    code, out, _ = run(capsys, "--format", "egtea", "--annotations",
                       str(real_annotations / "egtea-gaze-plus"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("EGTEA Gaze+ annotations in")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["train_split1"][1] == "8,299" and rows["test_split1"][1] == "2,022"
    # 106 action classes are used by the training split.
    assert rows["train_split1"][-1] == "106"


def test_small_set_lists_participants(capsys, tmp_path):
    (tmp_path / "EPIC_test_s2_timestamps.csv").write_text(
        "uid,participant_id,video_id,start_timestamp,stop_timestamp,start_frame,stop_frame\n"
        "1,P09,P09_01,00:00:00.00,00:00:01.00,1,10\n2,P11,P11_01,00:00:00.00,00:00:01.00,5,9\n"
    )
    code, out, _ = run(capsys, "--format", "epic55", "--annotations", str(tmp_path))
    assert code == 0
    assert "2 (P09 P11)" in out and " 15 " in out  # 10 + 5 frames


def test_bad_file_exit_code_and_message(capsys, tmp_path):
    path = tmp_path / "test_split1.txt"
    path.write_text("OP01-R01-Pasta-1-2-F1-F5 1 1 1\nOP01-R01-Pasta-1-2-F1-F5 1 1\n")
    code, out, err = run(capsys, "--format", "egtea", "--annotations", str(tmp_path))
    assert code == 1 and not out
    assert f"{path}, line 2:" in err
    code, _, err = run(capsys, "--format", "epic100", "--annotations", str(tmp_path))
    assert code == 1 and "no epic100 split files" in err


def test_joins_an_existing_data_group():
    parser = argparse.ArgumentParser(prog="fpar")
    sub = parser.add_subparsers(dest="command")
    data = sub.add_parser("data")
    data.add_subparsers(dest="data_command").add_parser("other")
    cli.register(sub)
    args = parser.parse_args(["data", "summary", "--format", "gtea61", "--annotations", "x"])
    assert args.func is cli.run_summary and args.format == "gtea61"
    assert parser.parse_args(["data", "other"]).data_command == "other"
