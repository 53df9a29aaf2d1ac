// RUN: parse-print --debug-locations %s | filecheck %s
// RUN: parse-print %s | filecheck %s --check-prefix=NOLOC
// RUN: roundtrip %s

// Source locations ride on ops and functions as MLIR `loc(...)`: a file
// position, a range ("f":L:C to L:C), gradient code as "backward"(...), or
// unknown.  Without --debug-locations the printer leaves them out.

// An op written without a location gets its place in this file: the span
// from its first result to the end of its name.
// CHECK-LABEL: func.func @g(%x: tensor<3xf32> {dl.name = "x"}) -> (tensor<3xf32>) {
// CHECK-NEXT:    %0 = "dl.abs"(%x) : (tensor<3xf32>) -> tensor<3xf32> loc("{{.*}}locations.mlir":[[# @LINE + 20]]:5 to [[# @LINE + 20]]:18)
// CHECK-NEXT:    func.return %0 : tensor<3xf32>
// CHECK-NEXT:  } loc("{{.*}}locations.mlir":[[# @LINE + 17]]:3 to [[# @LINE + 17]]:12)

// CHECK-LABEL: func.func @f(%x: tensor<3xf32> {dl.name = "x"}) -> (tensor<3xf32>) {
// CHECK-NEXT:    %0 = "dl.relu"(%x) : (tensor<3xf32>) -> tensor<3xf32> loc("model.dl":3:13)
// CHECK-NEXT:    %1 = "dl.exp"(%0) : (tensor<3xf32>) -> tensor<3xf32> loc("model.dl":4:9 to 4:15)
// CHECK-NEXT:    %2 = "dl.mul"(%1, %0) : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32> loc("backward"("model.dl":3:13))
// CHECK-NEXT:    %3 = "dl.neg"(%2) : (tensor<3xf32>) -> tensor<3xf32> loc(unknown)
// CHECK-NEXT:    %4 = "dl.neg"(%3) : (tensor<3xf32>) -> tensor<3xf32> loc("backward"(unknown))
// CHECK-NEXT:    %5 = "dl.neg"(%4) : (tensor<3xf32>) -> tensor<3xf32> loc("backward"(unknown))
// CHECK-NEXT:    %6 = "dl.neg"(%5) : (tensor<3xf32>) -> tensor<3xf32> loc("dir with space/m\"\C3\A9.dl":9:1)
// CHECK-NEXT:    func.return %6 : tensor<3xf32>
// CHECK-NEXT:  } loc("model.dl":2:1)
// CHECK-NEXT: }

// NOLOC-NOT: loc(

module {
  func.func @g(%x: tensor<3xf32>) -> (tensor<3xf32>) {
    %0 = "dl.abs"(%x) : (tensor<3xf32>) -> tensor<3xf32>
    func.return %0 : tensor<3xf32>
  }
  // Parameter and return locations (as mlir-opt prints them) are accepted and dropped.
  func.func @f(%x: tensor<3xf32> loc("model.dl":2:7)) -> (tensor<3xf32>) {
    %0 = "dl.relu"(%x) : (tensor<3xf32>) -> tensor<3xf32> loc("model.dl":3:13)
    %1 = "dl.exp"(%0) : (tensor<3xf32>) -> tensor<3xf32> loc("model.dl":4:9 to :15)
    %2 = "dl.mul"(%1, %0) : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32> loc("backward"("model.dl":3:13))
    %3 = "dl.neg"(%2) : (tensor<3xf32>) -> tensor<3xf32> loc(unknown)
    %4 = "dl.neg"(%3) : (tensor<3xf32>) -> tensor<3xf32> loc("backward"(unknown))
    %5 = "dl.neg"(%4) : (tensor<3xf32>) -> tensor<3xf32> loc("backward")
    %6 = "dl.neg"(%5) : (tensor<3xf32>) -> tensor<3xf32> loc("dir with space/m\22\C3\A9.dl":9:1)
    return %6 : tensor<3xf32> loc("model.dl":10:5)
  } loc("model.dl":2:1)
} loc(unknown)
