"""Downloads of stored registry files, shared by the pages and the API."""

import io

from django.http import FileResponse

from core.registry.models import Dataset
from core.registry.paths import dataset_dir
from core.storage import read_org_file


def dataset_report_response(dataset: Dataset) -> FileResponse:
    folder = dataset_dir(organisation_id=dataset.organisation_id, dataset_id=dataset.pk)
    return FileResponse(
        io.BytesIO(read_org_file(folder / "report.csv", dataset.organisation_id)),
        as_attachment=True,
        filename=f"{dataset.name}-v{dataset.version}-report.csv",
        content_type="text/csv",
    )
