"""hspace evaluate on a tiny run: every figure present, consistent and written out."""

import csv
import json
import shutil

import pytest
import torch

from hspace.cli import main
from hspace.evaluate import lg_from_log, reconstructor_accuracy
from hspace.metrics import separation_auc
from hspace.run import load_run


@pytest.fixture(scope="module")
def run_folder(tiny_run_dir):
    return tiny_run_dir


def test_rca_counts_and_confusion(run_folder):
    run = load_run(run_folder)
    r = reconstructor_accuracy(run, num_pairs=30, batch_size=16, progress=False)
    conf = torch.tensor(r["confusion"])
    assert conf.sum() == 30 and conf.shape == (run.config.K, run.config.K)
    assert r["rca"] == pytest.approx(conf.diag().sum().item() / 30)
    assert 0 <= r["shift_mae"] <= 2 * run.config.S
    again = reconstructor_accuracy(run, num_pairs=30, batch_size=7, progress=False)  # same draws in other batches
    assert again["rca"] == r["rca"]


def test_critic_lg_is_bce_against_real_per_sample(run_folder):
    run = load_run(run_folder)

    def critic(x):  # logit = 1 + 2 * the clamped image's mean, so L_G = softplus(-logit) per sample [N]
        return 1 + 2 * x.clamp(-1, 1).flatten(1).mean(1)

    r = reconstructor_accuracy(
        run, num_pairs=12, batch_size=5, progress=False, features=torch.nn.Flatten(), critic=critic
    )
    for side in ("raw", "shifted"):
        images = r[f"features_{side}"]  # the samples the critic saw, clamped and flattened by the features
        expected = torch.nn.functional.softplus(-critic(images)).mean()
        assert r[f"critic_lg_{side}"] == pytest.approx(expected.item(), abs=1e-6)
    raw, shifted = (critic(r[f"features_{side}"]) for side in ("raw", "shifted"))
    assert r["critic_auc"] == separation_auc(raw, shifted)
    zero = reconstructor_accuracy(run, num_pairs=6, progress=False, critic=lambda x: torch.zeros(len(x)))
    assert zero["critic_lg_raw"] == pytest.approx(0.6931471805599453) == zero["critic_lg_shifted"]
    assert zero["critic_auc"] == 0.5  # all ties: no better than chance


def test_lg_from_log_reads_every_logged_step(run_folder):
    with (run_folder / "log.csv").open(newline="") as f:
        logged = [(int(r["step"]), float(r["loss_g"])) for r in csv.DictReader(f)]
    lg = lg_from_log(run_folder)
    assert lg["lg_curve"] == logged and [step for step, _ in logged] == [1, 2, 3]
    values = torch.tensor([v for _, v in logged], dtype=torch.float64)
    assert lg["lg_mean"] == pytest.approx(values.mean().item()) and lg["lg_std"] == pytest.approx(values.std().item())
    assert lg["lg_mean_settled"] is None  # three steps: none after the discriminator's first 100
    assert lg_from_log(run_folder / "nowhere") == {
        "lg_mean": None,
        "lg_std": None,
        "lg_mean_settled": None,
        "lg_curve": [],
    }


def test_lg_settled_mean_leaves_out_the_first_hundred_steps(tmp_path):
    rows = ["step,loss_g"] + [f"{step},{3.0 if step <= 100 else 0.5 + (step % 2) * 0.25}" for step in range(1, 141)]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    lg = lg_from_log(tmp_path)
    assert lg["lg_mean_settled"] == pytest.approx(0.625)  # steps 101-140 alternate 0.75 and 0.5
    assert lg["lg_mean"] == pytest.approx((100 * 3.0 + 40 * 0.625) / 140)


def test_evaluate_cli_writes_report_and_json(run_folder, tmp_path):
    out, js = tmp_path / "eval", tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                str(run_folder),
                "--num-pairs",
                "20",
                "--recalibrate-pairs",
                "12",
                "--out",
                str(out),
                "--json",
                str(js),
            ]
        )
        == 0
    )
    r = json.loads(js.read_text())
    assert 0 <= r["rca_recalibrated"] <= 1 and "12 fresh pairs" in r["rca_recalibrated_note"]
    for key in ("rca", "rca_per_direction", "shift_mae", "fid_raw", "fid_shifted", "lg_mean", "lg_std", "num_pairs"):
        assert key in r
    assert r["num_pairs"] == 20 and r["fid_raw"] >= 0 and len(r["rca_per_direction"]) == 4
    assert sorted(r["ranking"]) == [0, 1, 2, 3]
    assert -1 <= r["edit_overlap_mean"] <= 1 and sorted(r["nearest_direction"]) == ["0", "1", "2", "3"]
    assert all(near["k"] != int(k) for k, near in r["nearest_direction"].items())
    assert 0 <= r["edit_even_share"] <= 1 and -1 <= r["edit_overlap_odd_mean"] <= 1
    report = (out / "report.md").read_text()
    assert "RCA (20 pairs)" in report and (out / "confusion.png").exists() and (out / "lg.png").exists()
    assert "edit overlap" in report and (out / "edit_overlap.png").exists()
    table = report.split("| measure |")[1].split("\n\n")[0]  # one table: no row left blank
    assert "odd parts" in table and "after step 100" not in table  # a 3-step run has no settled L_G
    assert r["critic_lg_shifted"] > 0 and r["critic_lg_raw"] > 0 and "run's discriminator" in table
    assert 0 <= r["critic_auc"] <= 1 and "AUC of that discriminator" in table


def test_evaluate_without_a_discriminator_leaves_its_row_out(run_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    (folder / "discriminator.safetensors").unlink()
    assert load_run(folder).load_discriminator() is None
    out = tmp_path / "eval"
    argv = ["evaluate", str(folder), "--num-pairs", "4", "--recalibrate-pairs", "0", "--out", str(out)]
    assert main([*argv, "--json", str(tmp_path / "e.json")]) == 0
    assert "critic_lg_raw" not in json.loads((tmp_path / "e.json").read_text())
    assert "run's discriminator" not in (out / "report.md").read_text()


def test_user_feature_extractor_is_named_clearly(run_folder, tmp_path, capsys):
    argv = ["evaluate", str(run_folder), "--num-pairs", "4", "--recalibrate-pairs", "0", "--out", str(tmp_path)]
    assert main([*argv, "--features", "torch.nn:Flatten"]) == 0
    assert main([*argv, "--features", "math:pi"]) == 2
    assert "not a torch.nn.Module" in capsys.readouterr().err


def test_evaluate_json_without_a_path_prints_only_the_json(run_folder, tmp_path, capsys):
    argv = ["evaluate", str(run_folder), "--num-pairs", "4", "--recalibrate-pairs", "0", "--out", str(tmp_path)]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["num_pairs"] == 4
    assert "RCA" in captured.err and "report.md" in captured.err
