"""Corpus files that are damaged or unusual: a cut or fake .gz is a ValueError naming the file (which
pretrain.py prints as a one-line error), and a CSV/TSV cell over csv's default field limit reads whole."""

import csv
import gzip
import json

import pytest

from minibert.data import read_records
from minibert.data.corpus import iter_records

CSV_DEFAULT_LIMIT = 131_072


@pytest.fixture
def default_csv_limit():
    """csv's default field limit for the test (whatever another test left), the old one put back after."""
    previous = csv.field_size_limit(CSV_DEFAULT_LIMIT)
    yield CSV_DEFAULT_LIMIT
    csv.field_size_limit(previous)


def _jsonl(n: int = 2000) -> bytes:
    return "".join(json.dumps({"text": f"Sentence number {i}. Another one."}) + "\n" for i in range(n)).encode()


def test_truncated_gzip_is_a_value_error_naming_the_file(tmp_path):
    whole = gzip.compress(_jsonl())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])  # a download stopped half way
    with pytest.raises(ValueError, match="not a complete gzip file") as error:
        list(iter_records(cut))
    assert str(cut) in str(error.value) and "gunzip -t" in str(error.value)
    with pytest.raises(ValueError, match="cut.jsonl.gz is not a complete gzip file"):
        read_records(cut)


def test_gzip_with_a_bad_crc_is_a_value_error(tmp_path):
    damaged = bytearray(gzip.compress(_jsonl()))
    damaged[-6] ^= 1  # the CRC in the trailer
    file = tmp_path / "damaged.txt.gz"
    file.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="damaged.txt.gz is not a complete gzip file .*CRC"):
        list(iter_records(file))


def test_file_named_gz_that_is_not_gzip_is_a_value_error_naming_the_file(tmp_path):
    fake = tmp_path / "plain.jsonl.gz"
    fake.write_bytes(_jsonl(10))  # not compressed, only named so
    with pytest.raises(ValueError, match="Not a gzipped file") as error:
        list(iter_records(fake))
    assert str(fake) in str(error.value) and "drop the .gz" in str(error.value)
    table = tmp_path / "plain.csv.gz"
    table.write_bytes(b"text,label\nhello,1\n")
    with pytest.raises(ValueError, match="plain.csv.gz is not a complete gzip file"):
        list(iter_records(table))


@pytest.mark.parametrize("name", ["long.csv", "long.tsv", "long.csv.gz"])
def test_table_cell_over_the_csv_field_limit_reads_whole(tmp_path, name, default_csv_limit):
    limit = default_csv_limit
    long_text = "A long document. " * 12_000  # 204,000 characters, over csv's default 131,072
    assert len(long_text) > 200_000 > limit
    sep = "\t" if ".tsv" in name else ","
    data = f"text{sep}label\n{long_text}{sep}1\nshort one{sep}0\n".encode()
    file = tmp_path / name
    file.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    records = [row for row, _ in iter_records(file)]
    assert [r["text"] for r in records] == [long_text, "short one"] and records[0]["label"] == "1"
    assert csv.field_size_limit() == limit  # the process-wide limit is back as it was


def test_csv_field_limit_is_restored_between_rows_and_on_close(tmp_path, default_csv_limit):
    limit = default_csv_limit
    file = tmp_path / "rows.csv"
    file.write_text("text\n" + "".join(f"{'x' * 150_000}\n" for _ in range(3)))
    records = iter_records(file)
    assert len(next(records)[0]["text"]) == 150_000
    assert csv.field_size_limit() == limit  # the reader is suspended: the caller sees its own limit
    records.close()  # left before the end
    assert csv.field_size_limit() == limit


def test_malformed_csv_is_a_value_error_naming_the_file_and_line(tmp_path, default_csv_limit):
    file = tmp_path / "cr.csv"
    file.write_bytes(b"text,label\nfine,1\nhalf\rline,0\n")  # a lone carriage return inside a row
    with pytest.raises(ValueError, match=r"cr.csv:3 is not valid CSV/TSV .*JSON lines"):
        list(iter_records(file))
    assert csv.field_size_limit() == default_csv_limit


def test_a_tsv_cell_that_swallowed_the_rows_after_it_is_named(tmp_path, default_csv_limit):
    """A cell that opens with a quote and never closes it reads on to the next quote, rows included:
    silently, 5 rows became 2 records, tabs and labels in the text."""
    file = tmp_path / "quote.tsv"
    file.write_text('label\ttext\n1\tFine.\n0\t"Unclosed quote.\n1\tThird.\n0\tFourth.\n')
    with pytest.raises(ValueError, match=r"quote.tsv:3: the `text` cell holds a tab .*never closes"):
        list(iter_records(file))
    file.write_text('label\ttext\n1\tFine.\n0\t"Quoted, closed."\n1\tThird.\n')
    assert [r["text"] for r, _ in iter_records(file)] == ["Fine.", "Quoted, closed.", "Third."]


def test_a_corpus_header_naming_a_column_twice_is_named(tmp_path, default_csv_limit):
    """csv.DictReader keeps the last column of a name: `text,label,text` read the second text column."""
    file = tmp_path / "twice.csv"
    file.write_text("text,label,text\nthe play,1,notes\n")
    with pytest.raises(ValueError, match=r"twice.csv: the header names the column\(s\) \['text'\] more than once"):
        list(iter_records(file))


def test_a_csv_row_with_more_cells_than_the_header_is_named(tmp_path, default_csv_limit):
    """An unquoted comma inside the text cell cut the text there, silently: "Hello, world." read as
    "Hello" (the rest went to a column with no name). A trailing empty cell is still fine."""
    file = tmp_path / "comma.csv"
    file.write_text("id,text\n1,Fine.\n2,Hello, world.\n")
    with pytest.raises(ValueError, match=r"comma.csv:3: the row has 3 cells but the header names 2 columns: a cell "
                                         r"probably holds an unquoted ',', which cut a text short.*or the row has a "
                                         r"value past the last named column"):
        list(iter_records(file))
    file.write_text('id,text\n1,Fine.,\n2,"Hello, world."\n')
    assert [r for r, _ in iter_records(file)] == [{"id": "1", "text": "Fine."}, {"id": "2", "text": "Hello, world."}]
