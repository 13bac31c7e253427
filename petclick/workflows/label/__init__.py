"""`petclick label`: a MONAI Label app that serves petclick's interactive session to 3D Slicer.

Modules without MONAI Label (importable, and tested, in a plain petclick install):
- options.py: the app's settings (`--conf` strings of MONAI Label <-> LabelOptions)
- studies.py: an autoPET-layout folder -> its images folder, the shown image's partner (CT <-> PET)
- requests.py: a request's point lists -> Clicks; bad requests -> LabelRequestError(status, message)
- limits.py: ids, names, JSON size and depth, params' reserved keys, whose session a request is (the
  4xx of hostile requests)
- routes.py: which MONAI Label endpoints are served (with DICOMweb studies: OHIF and the read half
  of its DICOMweb proxy), with what body, and why the others are refused
- admission.py: workers, the queue and its 429
- guard.py: the ASGI middleware that applies limits, routes and admission before a request is read
- access.py: loopback, or authentication, or --insecure (the start-up check)
- sessions.py: one InteractiveSession per reader and image id, kept in-process, bounded in memory;
  a request -> mask file + JSON
- launch.py: the MONAI_LABEL_* environment, the scratch folder's log and temporary files, and the
  uvicorn start of `petclick label`
- dicomweb_studies.py: `--studies http://.../dicom-web`: the server's studies cached on the PET grid,
  refused ones with their reason, each result stored back as a DICOM SEG (SegStore)
Modules that import monailabel (`pip install -r requirements-label.txt`, then monailabel --no-deps):
- shims.py: what monailabel 0.8.5 needs to import under torch 2.13.0+cpu and pydicom 3
- tasks.py: the infer tasks (`petclick`: interactive, DeepEdit-style point lists; `petclick_auto`: step 0)
- labelapp.py: the MONAILabelApp (datastore over the images folder, the two tasks)
- auth.py: MONAI Label's Keycloak token check, working under PyJWT 2
- server.py: the uvicorn entry (shims, MONAI Label's FastAPI app, the guard, the validating /infer and
  label routes, /info/ with the server's state, 4xx/5xx handlers)
- reader.py + static/reader.html: petclick's own browser reader page at /reader/ (MONAI Label serves
  OHIF at /ohif/ with DICOMweb studies)
- app/main.py: MONAI Label's app folder (`monailabel start_server --app` takes it), thin wiring
"""
