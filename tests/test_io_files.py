"""Tests for mh.io on the file system: paths, symlinks, modes, atomic writes, bad files."""

import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import zipfile
from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from helpers.subprocess_env import subprocess_env
from io_testing import assert_trees_identical as _assert_trees_identical
from io_testing import run_python as _run_python
from io_testing import tempdir as _tempdir
from io_testing import tree as _tree
from minihaiku import io as mh_io


class FileSystemTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = _tempdir(self)
        self.path = os.path.join(self.dir, "ckpt.npz")

    def test_missing_directory_names_the_target(self):
        path = os.path.join(self.dir, "no", "such", "dir", "p.npz")
        with self.assertRaises(FileNotFoundError) as cm:
            mh.io.save(path, _tree())
        self.assertIn(path, str(cm.exception))
        self.assertIn("create the directory", str(cm.exception))
        self.assertNotIn(".mh-", str(cm.exception))
        self.assertEqual(os.listdir(self.dir), [])

    def test_directory_as_path_names_it(self):
        with self.assertRaisesRegex(IsADirectoryError, f"'{self.dir}' is a directory"):
            mh.io.save(self.dir, _tree())
        self.assertEqual(os.listdir(self.dir), [])
        with self.assertRaisesRegex(mh.CheckpointError, "cannot read"):
            mh.io.load(self.dir)

    def test_longest_legal_file_name_works(self):
        name_max = os.pathconf(self.dir, "PC_NAME_MAX")
        path = os.path.join(self.dir, "p" * (name_max - 4) + ".npz")
        mh.io.save(path, _tree())
        _assert_trees_identical(self, mh.io.load(path), _tree())
        self.assertEqual(os.listdir(self.dir), [os.path.basename(path)])

    def test_too_long_file_name_names_the_target(self):
        name_max = os.pathconf(self.dir, "PC_NAME_MAX")
        path = os.path.join(self.dir, "p" * (name_max + 1))
        with self.assertRaises(OSError) as cm:
            mh.io.save(path, _tree())
        self.assertIn(path, str(cm.exception))
        self.assertNotIn(".mh-", str(cm.exception))
        self.assertEqual(os.listdir(self.dir), [])

    @parameterized.named_parameters(
        ("bytes", lambda p: os.fsencode(p)), ("pathlib", pathlib.Path))
    def test_bytes_and_pathlib_paths(self, convert):
        mh.io.save(convert(self.path), _tree())
        _assert_trees_identical(self, mh.io.load(convert(self.path)), _tree())
        loaded, missing = mh.io.load_partial(convert(self.path), like=_tree())
        self.assertEqual(missing, [])
        self.assertEqual(os.listdir(self.dir), ["ckpt.npz"])

    def test_undecodable_bytes_path(self):
        path = os.fsencode(self.dir) + b"/\xff\xfe.npz"
        mh.io.save(path, _tree())
        self.assertEqual(os.listdir(os.fsencode(self.dir)), [b"\xff\xfe.npz"])
        _assert_trees_identical(self, mh.io.load(path), _tree())

    def test_permission_error_names_the_target_not_the_temp_file(self):
        def refuse(name, *args, **kwargs):
            raise PermissionError(13, "Permission denied", name)

        with mock.patch.object(os, "open", refuse):
            with self.assertRaises(PermissionError) as cm:
                mh.io.save(self.path, _tree())
        self.assertIn(self.path, str(cm.exception))
        self.assertIn("write access", str(cm.exception))
        self.assertNotIn(".mh-", str(cm.exception))
        self.assertEqual(os.listdir(self.dir), [])

    def test_concurrent_saves_leave_one_whole_file(self):
        trees = [{"~/w": np.full((1000,), i, np.int32)} for i in range(8)]
        threads = [threading.Thread(target=mh.io.save, args=(self.path, t)) for t in trees]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out = mh.io.load(self.path)["~/w"]
        self.assertIn(int(out[0]), range(8))
        np.testing.assert_array_equal(out, trees[int(out[0])]["~/w"])
        self.assertEqual(os.listdir(self.dir), ["ckpt.npz"])

    def test_non_path_is_refused(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "path must be a str"):
            mh.io.save(3, _tree())
        with self.assertRaisesRegex(mh.InvalidArgumentError, "path must be a str"):
            mh.io.load(None)

    def test_symlink_writes_its_target_and_stays_a_link(self):
        os.mkdir(os.path.join(self.dir, "real"))
        target = os.path.join(self.dir, "real", "ckpt.npz")
        mh.io.save(target, {"~/w": np.zeros(2)})
        link = os.path.join(self.dir, "latest.npz")
        os.symlink(os.path.join("real", "ckpt.npz"), link)
        mh.io.save(link, {"~/w": np.ones(2)})
        self.assertTrue(os.path.islink(link))
        np.testing.assert_array_equal(mh.io.load(target)["~/w"], np.ones(2))
        np.testing.assert_array_equal(mh.io.load(link)["~/w"], np.ones(2))
        self.assertEqual(sorted(os.listdir(os.path.join(self.dir, "real"))), ["ckpt.npz"])

    def test_dangling_symlink_creates_its_target(self):
        link = os.path.join(self.dir, "latest.npz")
        os.symlink("new.npz", link)
        mh.io.save(link, {"~/w": np.ones(2)})
        self.assertTrue(os.path.islink(link))
        np.testing.assert_array_equal(
            mh.io.load(os.path.join(self.dir, "new.npz"))["~/w"], np.ones(2))

    def test_file_and_directory_are_fsynced(self):
        with mock.patch.object(os, "fsync", wraps=os.fsync) as fsync:
            mh.io.save(self.path, _tree())
        self.assertGreaterEqual(fsync.call_count, 2)

    def test_overwrite_keeps_the_file_mode(self):
        mh.io.save(self.path, _tree())
        os.chmod(self.path, 0o600)
        mh.io.save(self.path, {"~/w": np.ones(1)})
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    @parameterized.parameters(0o027, 0o002)
    def test_new_file_mode_follows_the_umask_without_touching_it(self, umask):
        out = _run_python(f"""
            import os
            calls = []
            real_umask = os.umask
            os.umask = lambda m: calls.append(m) or real_umask(m)
            import numpy as np
            import minihaiku as mh
            mh.io.save({self.path!r}, {{"~/w": np.ones(2)}})
            print(oct(os.stat({self.path!r}).st_mode & 0o777), len(calls))
            """, umask=umask)
        self.assertEqual(out.split(), [oct(0o666 & ~umask), "0"])


class AtomicWriteTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = _tempdir(self)
        self.path = os.path.join(self.dir, "ckpt.npz")

    def _fail_after_first_entry(self):
        real = mh_io._write_entry
        calls = []

        def failing(zf, key, value):
            calls.append(key)
            if len(calls) > 2:
                raise OSError("disk full (simulated)")
            real(zf, key, value)

        return mock.patch.object(mh_io, "_write_entry", failing), calls

    def test_failure_mid_write_keeps_old_file_and_leaves_no_temp(self):
        old = {"~/w": np.arange(3, dtype=np.float32)}
        mh.io.save(self.path, old)
        with open(self.path, "rb") as f:
            old_bytes = f.read()
        patch, calls = self._fail_after_first_entry()
        with patch, self.assertRaisesRegex(OSError, "simulated") as cm:
            mh.io.save(self.path, _tree())
        self.assertIn(self.path, str(cm.exception))
        self.assertGreater(len(calls), 2)  # The failure did happen mid-write.
        self.assertEqual(os.listdir(self.dir), ["ckpt.npz"])
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), old_bytes)
        np.testing.assert_array_equal(mh.io.load(self.path)["~/w"], old["~/w"])

    def test_failure_mid_write_without_old_file_creates_nothing(self):
        patch, _ = self._fail_after_first_entry()
        with patch, self.assertRaises(OSError):
            mh.io.save(self.path, _tree())
        self.assertEqual(os.listdir(self.dir), [])

    def test_failure_before_rename_keeps_old_file(self):
        mh.io.save(self.path, {"~/w": np.zeros(2)})
        with mock.patch.object(os, "replace", side_effect=KeyboardInterrupt):
            with self.assertRaises(KeyboardInterrupt):
                mh.io.save(self.path, {"~/w": np.ones(2)})
        self.assertEqual(os.listdir(self.dir), ["ckpt.npz"])
        np.testing.assert_array_equal(mh.io.load(self.path)["~/w"], np.zeros(2))

    def test_killed_process_mid_write_keeps_old_file(self):
        mh.io.save(self.path, {"~/w": np.zeros(2)})
        # A child killed by SIGKILL while writing: no cleanup code runs at all.
        code = textwrap.dedent(f"""
            import os, signal
            import numpy as np
            from minihaiku import io
            real = io._write_entry
            def write_then_die(zf, key, value):
                real(zf, key, value)
                if key == "1":
                    os.kill(os.getpid(), signal.SIGKILL)
            io._write_entry = write_then_die
            io.save({self.path!r}, {{"~/a": np.ones(2), "~/b": np.ones(9)}})
            """)
        proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(),
                              capture_output=True, timeout=300,
                              check=False)
        self.assertEqual(proc.returncode, -9)
        np.testing.assert_array_equal(mh.io.load(self.path)["~/w"], np.zeros(2))
        # Only a stray temporary file can remain, never a half target.
        leftovers = [n for n in os.listdir(self.dir) if n != "ckpt.npz"]
        self.assertTrue(all(n.startswith(".mh-") for n in leftovers), leftovers)


class BadFileTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = _tempdir(self)
        self.path = os.path.join(self.dir, "ckpt.npz")
        mh.io.save(self.path, _tree())
        with open(self.path, "rb") as f:
            self.good = f.read()

    def _write(self, data: bytes) -> str:
        path = os.path.join(self.dir, "bad.npz")
        with open(path, "wb") as f:
            f.write(data)
        return path

    @parameterized.parameters(0.1, 0.5, 0.9, 0.999)
    def test_truncated_file_is_a_clear_error(self, fraction):
        path = self._write(self.good[:int(len(self.good) * fraction)])
        with self.assertRaisesRegex(mh.CheckpointError, "truncated or corrupt"):
            mh.io.load(path)

    def test_flipped_data_byte_is_a_clear_error(self):
        data = bytearray(self.good)
        w = _tree()["~/Linear_0/__call__/w"].tobytes()
        at = bytes(data).index(w) + 5
        data[at] ^= 0xFF
        with self.assertRaisesRegex(mh.CheckpointError, "truncated or corrupt"):
            mh.io.load(self._write(bytes(data)))

    @parameterized.named_parameters(
        ("shape", '"entries": [["[\'w\']", "float32", [9]]], "tree": {"dict": [["w", 0]]}',
         r"\['w'\] is float32\(3,\) but the header says float32\(9,\)"),
        ("tree_uses_missing_entry", '"entries": [["[\'w\']", "float32", [3]]], '
         '"tree": {"dict": [["w", 1]]}', "bad tree node 1"),
        ("tree_skips_an_entry", '"entries": [["[\'w\']", "float32", [3]]], '
         '"tree": {"dict": []}', "uses 0 of 1 entries"),
        ("no_entries_key", '"tree": null', "malformed"),
    )
    def test_header_disagreeing_with_data_is_corrupt(self, body, message):
        path = os.path.join(self.dir, "lying.npz")
        header = ('{"format": "minihaiku.io", "version": 2, ' + body + '}').encode()
        with zipfile.ZipFile(path, "w") as zf:
            with zf.open("__minihaiku__.npy", "w") as f:
                np.lib.format.write_array(f, np.frombuffer(header, np.uint8))
            with zf.open("0.npy", "w") as f:
                np.lib.format.write_array(f, np.zeros(3, np.float32))
        with self.assertRaisesRegex(mh.CheckpointError, message):
            mh.io.load(path)

    def test_newer_version_is_refused(self):
        path = os.path.join(self.dir, "future.npz")
        header = b'{"format": "minihaiku.io", "version": 3, "entries": [], "tree": null}'
        with zipfile.ZipFile(path, "w") as zf:
            with zf.open("__minihaiku__.npy", "w") as f:
                np.lib.format.write_array(f, np.frombuffer(header, np.uint8))
        with self.assertRaisesRegex(mh.CheckpointError, "format version 3.*upgrade"):
            mh.io.load(path)

    def test_foreign_npz_is_refused(self):
        path = os.path.join(self.dir, "foreign.npz")
        np.savez(path, w=np.ones(3))
        with self.assertRaisesRegex(mh.CheckpointError, "not written by mh.io.save"):
            mh.io.load(path)

    @parameterized.named_parameters(
        ("npy", None), ("text", b"hello, world\n"), ("empty", b""))
    def test_non_npz_file_is_refused(self, data):
        if data is None:
            path = os.path.join(self.dir, "array.npy")
            np.save(path, np.ones(3))
        else:
            path = self._write(data)
        with self.assertRaisesRegex(mh.CheckpointError, "not written by mh.io.save"):
            mh.io.load(path)

    def test_missing_file(self):
        path = os.path.join(self.dir, "nope.npz")
        with self.assertRaisesRegex(mh.CheckpointNotFoundError, "no file at .*nope.npz") as cm:
            mh.io.load(path)
        self.assertIsInstance(cm.exception, FileNotFoundError)
        with self.assertRaises(mh.CheckpointNotFoundError):
            mh.io.load_partial(path, like={})


if __name__ == "__main__":
    absltest.main()
