"""Downloads of stored registry files, shared by the pages and the API."""

from django.http import FileResponse

from core.registry.models import Dataset


def dataset_report_response(dataset: Dataset) -> FileResponse:
    return FileResponse(
        open(dataset.report_path, "rb"),  # noqa: SIM115 - FileResponse closes it
        as_attachment=True,
        filename=f"{dataset.name}-v{dataset.version}-report.csv",
        content_type="text/csv",
    )
