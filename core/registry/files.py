"""Downloads of stored registry files, shared by the pages and the API."""

from django.http import FileResponse

from core.registry.models import Dataset
from core.registry.paths import dataset_dir


def dataset_report_response(dataset: Dataset) -> FileResponse:
    folder = dataset_dir(organisation_id=dataset.organisation_id, dataset_id=dataset.pk)
    return FileResponse(
        (folder / "report.csv").open("rb"),
        as_attachment=True,
        filename=f"{dataset.name}-v{dataset.version}-report.csv",
        content_type="text/csv",
    )
