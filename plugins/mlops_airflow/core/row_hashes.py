"""Row hashes over whole Arrow tables, vectorised: the data contract's duplicate rule finds equal rows with them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_airflow.core.contract_window import to_numpy_mask

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


_FNV_PRIME = 0x100000001B3


def row_hashes(table: pa.Table) -> np.ndarray:
    """A 64-bit hash per row: equal rows hash equal. Collisions are resolved by the caller."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    hashes = np.full(table.num_rows, 0xCBF29CE484222325, dtype=np.uint64)
    for array in table.columns:
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)  # chunks may carry different dictionaries
        kind = array.type
        if pa.types.is_floating(kind):
            codes = np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64).view(np.uint64)
        elif pa.types.is_integer(kind) or pa.types.is_timestamp(kind) or pa.types.is_boolean(kind):
            codes = np.asarray(pc.fill_null(array.cast(pa.int64()), -(2**62)).to_numpy(zero_copy_only=False)).view(np.uint64)
        else:
            # One dictionary over the whole column, so equal strings share one code.
            indices = array.combine_chunks().dictionary_encode().indices
            codes = np.asarray(pc.fill_null(indices, -1).cast(pa.int64()).to_numpy(zero_copy_only=False)).view(np.uint64)
        hashes ^= codes
        hashes *= np.uint64(_FNV_PRIME)
    # splitmix64 finaliser: spreads the bits so nearby inputs do not collide.
    hashes ^= hashes >> np.uint64(30)
    hashes *= np.uint64(0xBF58476D1CE4E5B9)
    hashes ^= hashes >> np.uint64(27)
    hashes *= np.uint64(0x94D049BB133111EB)
    hashes ^= hashes >> np.uint64(31)
    return hashes


def _same_as_previous(sorted_table: pa.Table) -> np.ndarray:
    """For rows sorted by every column: is row i equal to row i-1? Nulls equal nulls, NaN equals NaN."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    same = np.ones(max(sorted_table.num_rows - 1, 0), dtype=bool)
    for array in sorted_table.columns:
        array = array.combine_chunks()
        current, previous = array.slice(1), array.slice(0, len(array) - 1)
        equal = to_numpy_mask(pc.equal(current, previous))
        equal |= to_numpy_mask(pc.and_(pc.is_null(current), pc.is_null(previous)))
        if pa.types.is_floating(array.type):
            equal |= to_numpy_mask(pc.and_(pc.is_nan(current), pc.is_nan(previous)))
        same &= equal
    return np.concatenate([[False], same])


def duplicate_row_mask(table: pa.Table) -> np.ndarray:
    """Rows equal to another row, one of each group excepted. Exact: hash candidates are compared in full."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.table([c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns], names=table.column_names)
    hashes = pa.array(row_hashes(table))
    counts = pc.value_counts(hashes)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    mask = np.zeros(table.num_rows, dtype=bool)
    if not len(repeated):
        return mask
    candidates = np.flatnonzero(to_numpy_mask(pc.is_in(hashes, value_set=repeated)))
    subset = table.take(pa.array(candidates))
    order = pc.sort_indices(subset, sort_keys=[(name, "ascending", "at_end") for name in subset.column_names]).to_numpy()
    same = _same_as_previous(subset.take(pa.array(order)))
    mask[candidates[order[same]]] = True
    return mask
