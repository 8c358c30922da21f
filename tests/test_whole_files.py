"""whole_files.py: Tune's storage for a study on this disk, every file it writes there whole. A
driver killed while Tune copied its snapshot left an empty experiment_state file that --resume could
not read; through this file system the study's folder holds the old file or the new one."""

from __future__ import annotations

import gc
import pickle

import pyarrow.fs

from fashion_tune import whole_files


def test_a_folder_copied_as_tune_copies_its_snapshots_arrives_whole_with_nothing_beside_it(tmp_path):
    staging, study = tmp_path / "staging", tmp_path / "study"
    staging.mkdir()
    (staging / "experiment_state-x.json").write_text('{"trial_data": []}' * 1000)
    (staging / "searcher-state-x.pkl").write_bytes(bytes(range(256)) * 4000)
    (study / "trial_a").mkdir(parents=True)
    (study / "experiment_state-x.json").write_text("old")
    pyarrow.fs.copy_files(str(staging), str(study), destination_filesystem=whole_files.filesystem(), use_threads=True)
    assert sorted(p.name for p in study.iterdir()) == ["experiment_state-x.json", "searcher-state-x.pkl", "trial_a"]
    for name in ("experiment_state-x.json", "searcher-state-x.pkl"):
        assert (study / name).read_bytes() == (staging / name).read_bytes()


def test_a_file_being_written_is_the_old_one_until_it_is_whole(tmp_path):
    path = tmp_path / "experiment_state-x.json"
    path.write_text("the last snapshot")
    stream = whole_files.filesystem().open_output_stream(str(path))
    stream.write(b'{"trial_data": [')  # the driver killed here leaves this in a hidden partial file
    assert path.read_text() == "the last snapshot"
    stream.write(b"]}")
    stream.close()
    assert path.read_text() == '{"trial_data": []}' and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_stream_dropped_unclosed_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "tuner.pkl"
    path.write_text("old")
    stream = whole_files.filesystem().open_output_stream(str(path))
    stream.write(b"half")
    del stream
    gc.collect()
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["tuner.pkl"]


def test_tune_can_send_it_to_the_trials_and_our_code_knows_it_is_this_disk(tmp_path):
    from fashion_tune import storage

    filesystem = pickle.loads(pickle.dumps(whole_files.filesystem()))
    assert whole_files.is_this_disk(filesystem) and whole_files.is_this_disk(pyarrow.fs.LocalFileSystem())
    assert storage.on_this_disk(filesystem, str(tmp_path / "trial_a")) == tmp_path / "trial_a"
    filesystem.create_dir(str(tmp_path / "trial_a" / "checkpoint_000001"))
    filesystem.copy_file(__file__, str(tmp_path / "trial_a" / "checkpoint_000001" / "model.keras"))
    listed = filesystem.get_file_info(pyarrow.fs.FileSelector(str(tmp_path), recursive=True))
    assert sorted(info.base_name for info in listed) == ["checkpoint_000001", "model.keras", "trial_a"]
    filesystem.delete_dir(str(tmp_path / "trial_a"))
    assert not list(tmp_path.iterdir())
